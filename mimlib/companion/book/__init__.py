"""The book layer: a page's session (parameters checked, tables and figures shown, glued and
exported), the profiles that give each page its parameters, the chapters' names, the parameters
cell and the re-run line. Reads results and analyses; runs nothing itself."""
