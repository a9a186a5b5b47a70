"""The run layer: the ``mimlib`` command, planning and running pages through papermill, here or
as jobs, what they need before a kernel starts, the manifest of executed pages and the book
build. The top of the house: nothing imports it."""
