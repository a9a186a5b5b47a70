"""The two protocols: what `faithful` takes from the authors' code, and that every quirk is
listed once, differs between the protocols, and can be measured by the report."""

import dataclasses

import pytest

from mimlib.companion import analysis
from mimlib.detectors import DetectorOptions
from mimlib.errors import ConfigError
from mimlib.companion.results.protocol import DESIGN_CHOICES, QUIRKS, check_protocol, paper_k, protocol_settings
from mimlib.train_config import BN_MODES

TRAINING_QUIRKS = {"shuffle", "aug_p", "aug_quantize"}


def test_corrected_is_the_usual_protocol_on_every_data_set() -> None:
    for id_data in ("cifar10", "cifar100", "synthetic"):
        s = protocol_settings("corrected", id_data)
        assert s.mim_overrides() == {"shuffle": True, "bn_mode": "frozen", "aug_p": 1.0,
                                     "aug_quantize": False}
        assert s.fit_split == "train" and s.detector_options == DetectorOptions()


def test_faithful_repeats_each_notebook_of_the_authors() -> None:
    c10, c100 = protocol_settings("faithful", "cifar10"), protocol_settings("faithful", "cifar100")
    assert c10.mim_overrides() == {"shuffle": False, "bn_mode": "frozen", "aug_p": 0.5,
                                   "aug_quantize": True}
    assert c100.aug_p == 1.0  # the CIFAR-100 notebook augments every mixed image
    assert c10.fit_split == c100.fit_split == "test"
    assert c10.detector_options.mahalanobis_eps == c100.detector_options.mahalanobis_eps == 0.002
    assert c10.detector_options.features_as_logits == ()
    assert c100.detector_options.features_as_logits == ("Entropy", "Energy")
    assert (paper_k("cifar10"), paper_k("cifar100"), paper_k("synthetic")) == (10, 5, 10)


def test_every_quirk_is_a_setting_on_which_the_protocols_differ() -> None:
    names = [q.setting for q in QUIRKS]
    assert len(names) == len(set(names))
    detector_fields = {f.name for f in dataclasses.fields(DetectorOptions)}

    def value(settings, name):
        holder = settings.detector_options if name in detector_fields else settings
        return getattr(holder, name)

    for name in set(names) - {"seed"}:  # the unseeded coin has no setting to flip
        assert any(value(protocol_settings("faithful", id_data), name)
                   != value(protocol_settings("corrected", id_data), name)
                   for id_data in ("cifar10", "cifar100")), name


def test_the_report_lists_each_quirk_once_and_knows_how_to_measure_it() -> None:
    listed = analysis.quirk_list()
    assert listed["quirk"].tolist() == [q.setting for q in QUIRKS]
    assert listed["authors' code"].str.len().min() > 10 and listed["corrected"].notna().all()
    measurable = TRAINING_QUIRKS | set(analysis.QUIRK_DETECTORS) | {"seed"}
    assert set(listed["quirk"]) == measurable


def test_an_unknown_protocol_is_refused_with_the_choices() -> None:
    assert check_protocol("faithful") == "faithful"
    with pytest.raises(ConfigError, match=r"unknown protocol 'authors'.*faithful.*corrected"):
        protocol_settings("authors", "cifar10")


def test_batch_norm_is_a_design_choice_both_protocols_keep_as_the_authors_ran_it() -> None:
    """BN handling changes what the method is, so it is no quirk that `corrected` fixes: both
    protocols fine-tune with it frozen (the authors' code never calls model.train()), and the
    other modes are listed as the sensitivity the book measures."""
    assert "bn_mode" not in {q.setting for q in QUIRKS}
    assert [d.setting for d in DESIGN_CHOICES] == ["bn_mode"]
    for protocol in ("faithful", "corrected"):
        for id_data in ("cifar10", "cifar100"):
            assert protocol_settings(protocol, id_data).bn_mode == "frozen"
    choice = DESIGN_CHOICES[0]
    assert all(mode in choice.authors + choice.alternatives for mode in BN_MODES)
    listed = analysis.design_choices()
    assert listed["setting"].tolist() == ["bn_mode"] and "model.train()" in listed.iloc[0, 1]
