"""Rule behaviour of the report labeler: mentions, negation / uncertainty scope, sections, evidence."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cxrkit.errors import CxrkitError
from cxrkit.findings import FINDINGS, NO_FINDING
from cxrkit.reports import Labeler, label_text, load_rules
from cxrkit.reports.rules import compile_phrase, default_rules_dir
from cxrkit.reports.text import split_sentences


@pytest.fixture(scope="module")
def labeler() -> Labeler:
    return Labeler()


def lab(labeler: Labeler, text: str) -> dict[str, int | None]:
    result = labeler.label(text)
    assert result.ok, result.status
    return {k: v for k, v in result.labels.items() if v is not None}


# --- mentions and vocabulary -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, finding, value",
    [
        ("Bibasilar atelectasis.", "Atelectasis", 1),
        ("Atelectatic changes at the left base.", "Atelectasis", 1),
        ("Collapse of the left lower lobe.", "Atelectasis", 1),
        ("Mild cardiomegaly.", "Cardiomegaly", 1),
        ("Enlarged cardiac silhouette.", "Cardiomegaly", 1),
        ("The cardiac silhouette is mildly enlarged.", "Cardiomegaly", 1),
        ("Borderline heart size.", "Cardiomegaly", 1),
        ("Interval increase in heart size.", "Cardiomegaly", 1),
        ("Small left pleural effusion.", "Effusion", 1),
        ("Small amount of pleural fluid.", "Effusion", 1),
        ("Right lower lobe infiltrate.", "Infiltration", 1),
        ("Right hilar mass.", "Mass", 1),
        ("8 mm nodule in the right upper lobe.", "Nodule", 1),
        ("Right lower lobe pneumonia.", "Pneumonia", 1),
        ("Small apical pneumothorax.", "Pneumothorax", 1),
        ("Dense consolidation in the lingula.", "Consolidation", 1),
        ("Mild interstitial pulmonary edema.", "Edema", 1),
        ("Emphysematous changes.", "Emphysema", 1),
        ("Pulmonary fibrosis.", "Fibrosis", 1),
        ("Left apical pleural thickening.", "Pleural_Thickening", 1),
        ("Thickening of the minor fissure.", "Pleural_Thickening", 1),
        ("Small hiatal hernia.", "Hernia", 1),
        ("Large hiatus hernia behind the heart.", "Hernia", 1),
    ],
)
def test_mentions(labeler, text, finding, value):
    assert lab(labeler, text).get(finding) == value


@pytest.mark.parametrize(
    "text, finding, value",
    [
        # signs suggest a finding without establishing it: uncertain, negative when negated
        ("Blunting of the costophrenic angle.", "Effusion", -1),
        ("Blunting of the left costophrenic angle.", "Effusion", -1),
        ("The costophrenic angles are not blunted.", "Effusion", 0),
        ("Hyperinflated lungs.", "Emphysema", -1),
        ("Hyperexpanded lungs with flattened diaphragms.", "Emphysema", -1),
        ("Left-sided volume loss.", "Atelectasis", -1),
        ("1 cm nodular opacity in the right midlung.", "Nodule", -1),
        ("Masslike opacity in the right lung base.", "Mass", -1),
    ],
)
def test_signs_are_uncertain(labeler, text, finding, value):
    assert lab(labeler, text).get(finding) == value


@pytest.mark.parametrize(
    "text, finding",
    [
        ("Subcutaneous emphysema in the left chest wall.", "Emphysema"),
        ("Small pericardial effusion.", "Effusion"),
        ("No mass effect.", "Mass"),
        ("Calcified mediastinal lymph nodes.", "Nodule"),
        ("Cystic fibrosis.", "Fibrosis"),
    ],
)
def test_excluded_look_alikes(labeler, text, finding):
    assert lab(labeler, text).get(finding) is None


def test_normal_heart_size_is_negative_cardiomegaly(labeler):
    for text in (
        "Normal heart size.",
        "Heart size is normal.",
        "The heart is normal in size.",
        "The heart is not enlarged.",
        "Heart size and mediastinal contours are within normal limits.",
        "The cardiomediastinal silhouette is within normal limits.",
        "Heart size is upper limits of normal.",
    ):
        assert lab(labeler, text) == {"Cardiomegaly": 0, NO_FINDING: 1}, text


def test_heart_words_without_attribute_are_not_mentions(labeler):
    assert lab(labeler, "Heart size is stable.") == {NO_FINDING: 1}
    # the gap of a heart phrase does not jump over an opposite attribute
    assert lab(labeler, "Heart size is normal with increased interstitial markings.") == {"Cardiomegaly": 0, NO_FINDING: 1}
    assert lab(labeler, "The heart is enlarged, lungs are normal.")["Cardiomegaly"] == 1


def test_xxxx_deidentification_tokens(labeler):
    assert lab(labeler, "No XXXX pleural effusion.") == {"Effusion": 0, NO_FINDING: 1}
    assert lab(labeler, "XXXX cardiomegaly.")["Cardiomegaly"] == 1
    assert lab(labeler, "There are no XXXX of a pleural effusion.")["Effusion"] == 0
    r = labeler.label("Small pleural XXXX fluid.")
    assert r.labels["Effusion"] == 1
    assert r.evidence[0].text == "pleural XXXX fluid"


# --- negation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "No pleural effusion.",
        "There is no pleural effusion.",
        "No evidence of pleural effusion.",
        "Without pleural effusion.",
        "Lungs are free of effusion.",
        "Negative for pleural effusion.",
        "Pleural effusion is not seen.",
        "The left pleural effusion has resolved.",
        "Resolved pleural effusion.",
        "Interval resolution of the pleural effusion.",
        "Pleural effusion is no longer seen.",
        "No definite pleural effusion.",
    ],
)
def test_negation_pre_and_post(labeler, text):
    assert lab(labeler, text)["Effusion"] == 0


def test_negation_covers_a_list(labeler):
    got = lab(labeler, "No focal consolidation, pleural effusion, or pneumothorax.")
    assert got == {"Consolidation": 0, "Effusion": 0, "Pneumothorax": 0, NO_FINDING: 1}
    got = lab(labeler, "Lungs are clear without focal consolidation, effusion, or pneumothorax.")
    assert got["Pneumothorax"] == 0 and got["Consolidation"] == 0


def test_negation_scope_ends_at_but_however_and_sentence_end(labeler):
    assert lab(labeler, "No pneumothorax, but small left effusion.") == {"Pneumothorax": 0, "Effusion": 1}
    assert lab(labeler, "No pneumothorax; however, there is a small effusion.") == {"Pneumothorax": 0, "Effusion": 1}
    assert lab(labeler, "No pneumothorax. Small effusion.") == {"Pneumothorax": 0, "Effusion": 1}
    assert lab(labeler, "No evidence of pneumonia, although atelectasis is present.")["Atelectasis"] == 1
    assert lab(labeler, "No definite pleural effusion seen, left basilar atelectasis.")["Atelectasis"] == 1


def test_negation_window_is_limited(labeler):
    far = "No acute osseous abnormality of the visualized thoracic spine or ribs seen on the frontal view and mild cardiomegaly."
    assert lab(labeler, far)["Cardiomegaly"] == 1


def test_without_only_negates_what_follows(labeler):
    assert lab(labeler, "Cardiomegaly without overt edema.") == {"Cardiomegaly": 1, "Edema": 0}


# --- uncertainty, double negation, pseudo-triggers ---------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Opacity may represent pneumonia.",
        "Possible pneumonia.",
        "Suspicious for pneumonia.",
        "Findings concerning for pneumonia.",
        "Cannot exclude pneumonia.",
        "Pneumonia cannot be excluded.",
        "Pneumonia is not excluded.",
        "Pneumonia can not be ruled out.",
        "Questionable right lower lobe pneumonia.",
        "Atelectasis versus pneumonia.",
        "Pneumonia vs. atelectasis.",
        "Pneumonia?",
        "Differential diagnosis includes pneumonia.",
        "Findings suggestive of pneumonia.",
    ],
)
def test_uncertainty(labeler, text):
    assert lab(labeler, text)["Pneumonia"] == -1


def test_double_negation_is_uncertain_not_negative(labeler):
    r = labeler.label("Small pneumothorax cannot be excluded.")
    assert r.labels["Pneumothorax"] == -1
    assert r.evidence[0].rule.startswith("uncertainty.both:")
    assert r.evidence[0].trigger_text == "cannot be excluded"


def test_versus_makes_both_sides_uncertain(labeler):
    assert lab(labeler, "Bibasilar atelectasis versus infiltrate.") == {"Atelectasis": -1, "Infiltration": -1}


def test_uncertainty_scope_covers_or_list(labeler):
    got = lab(labeler, "Minimal patchy airspace disease, may reflect atelectasis or consolidation.")
    assert got == {"Atelectasis": -1, "Consolidation": -1}


def test_negated_uncertainty_is_negative(labeler):
    assert lab(labeler, "There is no focal consolidation to suggest pneumonia.") == {"Consolidation": 0, "Pneumonia": 0, NO_FINDING: 1}


def test_probable_hedges_count_as_positive(labeler):
    r = labeler.label("Probable atelectasis.")
    assert r.labels["Atelectasis"] == 1 and r.evidence[0].rule.startswith("probable.pre:")
    assert lab(labeler, "Opacities consistent with pulmonary edema.")["Edema"] == 1


def test_no_change_in_is_positive(labeler):
    for text in (
        "No change in cardiomegaly.",
        "No significant interval change in the small left pleural effusion.",
        "Without significant interval change of mild subsegmental atelectasis.",
        "No interval change in the right upper lobe nodule.",
    ):
        labels = lab(labeler, text)
        assert 1 in labels.values() and 0 not in labels.values(), (text, labels)
    r = labeler.label("No change in cardiomegaly.")
    assert r.evidence[0].rule.startswith("pseudo.")


def test_no_new_differs_from_no(labeler):
    assert lab(labeler, "No consolidation.") == {"Consolidation": 0, NO_FINDING: 1}
    # "no new X": X may persist from before (CheXpert's convention), so uncertain, not negative
    new = labeler.label("No new consolidation.")
    assert new.labels["Consolidation"] == -1
    assert "no new" in new.evidence[0].rule
    assert lab(labeler, "Stable left effusion. No new effusion.")["Effusion"] == 1


def test_aggregation_positive_beats_uncertain_beats_negative(labeler):
    assert lab(labeler, "No pleural effusion. IMPRESSION: Small left pleural effusion.")["Effusion"] == 1
    assert lab(labeler, "No pleural effusion. Possible small effusion.")["Effusion"] == -1


def test_no_finding(labeler):
    assert lab(labeler, "The lungs are clear. No acute disease.") == {NO_FINDING: 1}
    assert NO_FINDING not in lab(labeler, "Mild cardiomegaly.")
    assert NO_FINDING not in lab(labeler, "Possible pneumonia.")
    r = labeler.label("Mild cardiomegaly. No effusion.")
    assert r.nih_labels() == "Cardiomegaly"
    assert labeler.label("Possible pneumonia.").nih_labels() == NO_FINDING  # NIH: positives only


# --- sections and sentences --------------------------------------------------------------------


def test_sections_default_skips_indication_and_history(labeler):
    text = "INDICATION: rule out pneumonia. HISTORY: prior pneumothorax.\nFINDINGS: Lungs are clear.\nIMPRESSION: Mild cardiomegaly."
    r = labeler.label(text)
    assert {k: v for k, v in r.labels.items() if v is not None} == {"Cardiomegaly": 1}
    assert r.sections == ("findings", "impression")
    assert all(e.section in ("findings", "impression") for e in r.evidence)


def test_sections_can_be_included():
    text = "INDICATION: Pneumonia.\nFINDINGS: Lungs are clear."
    assert Labeler(sections=["findings", "impression", "indication"]).label(text).labels["Pneumonia"] == 1
    assert Labeler().label(text).labels["Pneumonia"] is None
    assert Labeler(sections=["all"]).label(text).labels["Pneumonia"] == 1


def test_only_excluded_sections_gives_status(labeler):
    r = labeler.label("INDICATION: cough.\nCOMPARISON: none.")
    assert not r.ok and "no text to label" in r.status
    assert all(v is None for v in r.labels.values())


def test_text_without_headers_is_labeled(labeler):
    assert labeler.label("Mild cardiomegaly.").sections == ("body",)
    assert labeler.label("Mild cardiomegaly.").evidence[0].section == "body"


def test_running_text_colon_is_not_a_header(labeler):
    r = labeler.label("Chest: The heart is enlarged.")
    assert r.labels["Cardiomegaly"] == 1


def test_sentence_split_keeps_decimals_abbreviations_and_list_markers():
    text = "1. A 1.5 cm nodule, cf. prior. 2. No effusion vs. scarring.Reports follow"
    spans = [text[s.start : s.end] for s in split_sentences(text)]
    assert spans == ["A 1.5 cm nodule, cf. prior.", "No effusion vs. scarring.", "Reports follow"]


def test_line_breaks_split_structured_lines_but_not_wrapped_sentences(labeler):
    text = "Heart: normal size\nLungs: no effusion\nPleura: thickened"
    assert [text[s.start : s.end] for s in split_sentences(text)] == ["Heart: normal size", "Lungs: no effusion", "Pleura: thickened"]
    wrapped = "No pleural effusion or\nPneumothorax is seen."
    assert len(split_sentences(wrapped)) == 1
    assert lab(labeler, wrapped) == {"Effusion": 0, "Pneumothorax": 0, NO_FINDING: 1}
    # the negation of one line does not reach the next
    assert lab(labeler, "Pleura: no effusion\nLungs: Atelectasis at the left base")["Atelectasis"] == 1


def test_empty_and_missing_text(labeler):
    for text, status in ((None, "missing text"), ("", "empty text"), ("   \n ", "empty text")):
        r = labeler.label(text)
        assert r.status == status and not r.ok
        assert all(v is None for v in r.labels.values())
        assert r.nih_labels() == ""


def test_undecodable_bytes_give_status(labeler):
    text = b"Mild cardiomegaly \xe9 effusion".decode("utf-8", "surrogateescape")
    r = labeler.label(text)
    assert not r.ok and "not valid UTF-8" in r.status and "0xE9" in r.status


# --- evidence ----------------------------------------------------------------------------------


def test_evidence_offsets_index_the_original_text(labeler):
    text = "FINDINGS: Heart size is normal.  No XXXX pleural effusion; cannot exclude pneumonia.\n\nIMPRESSION: 1. Mild CARDIOMEGALY."
    r = labeler.label(text)
    assert len(r.evidence) == 4
    for e in r.evidence:
        assert text[e.start : e.end] == e.text
        assert e.sentence_start <= e.start < e.end <= e.sentence_end
        if e.trigger_start is not None:
            assert text[e.trigger_start : e.trigger_end] == e.trigger_text
        assert e.rule and e.mention_rule
    by = {e.finding: e for e in r.evidence if e.status != "positive"}
    assert by["Effusion"].trigger_text == "No" and by["Effusion"].rule == "negation.pre:no"
    assert text[by["Pneumonia"].sentence_start : by["Pneumonia"].sentence_end] == "No XXXX pleural effusion; cannot exclude pneumonia."
    d = r.to_dict()
    assert d["labels"]["Cardiomegaly"] == 1 and d["evidence"][0]["sentence"]["text"] == "Heart size is normal."


def test_non_ascii_lowercase_keeps_offsets(labeler):
    text = "İİ Mild cardiomegaly. Kein Erguss."
    r = labeler.label(text)
    assert r.labels["Cardiomegaly"] == 1
    e = r.evidence[0]
    assert text[e.start : e.end] == "cardiomegaly"


def test_label_text_and_all_columns():
    r = label_text("Mild cardiomegaly.", "r1")
    assert r.id == "r1" and set(r.labels) == set(FINDINGS) | {NO_FINDING}


# --- rule files are data -----------------------------------------------------------------------


def test_phrase_syntax():
    import re

    def m(phrase: str, text: str) -> bool:
        return re.fullmatch(compile_phrase(phrase), text) is not None

    assert m("pleural fluid", "pleural   fluid") and m("pleural fluid", "pleural-fluid") and m("pleural fluid", "pleural xxxx fluid")
    assert m("atelecta*", "atelectatic") and not m("atelecta*", "xatelectasis")
    assert m("collapse of the (right|left)? lobe", "collapse of the lobe")
    assert m("collapse of the (right|left)? lobe", "collapse of the left lobe")
    assert m("increase(d)? in size", "increase in size") and m("increase(d)? in size", "increased in size")
    assert m("heart ... enlarged", "heart is mildly enlarged")
    assert not m("heart ... enlarged", "heart. enlarged")
    with pytest.raises(CxrkitError, match="unknown macro"):
        compile_phrase("{nope} effusion")
    with pytest.raises(CxrkitError, match="not a valid pattern"):
        compile_phrase("effusion (")


def copy_rules(tmp_path: Path) -> Path:
    d = tmp_path / "rules"
    shutil.copytree(default_rules_dir(), d, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return d


def test_edited_rule_files_change_behaviour(tmp_path):
    d = copy_rules(tmp_path)
    text = "Large bleb in the left apex."
    assert Labeler().label(text).labels["Emphysema"] is None
    mentions = (d / "mentions.toml").read_text()
    mentions = mentions.replace("  'emphysematous',\n]", "  'emphysematous',\n  'blebs?',\n]", 1)
    (d / "mentions.toml").write_text(mentions)
    triggers = (d / "triggers.toml").read_text().replace("'no', 'not',", "'no', 'not', 'absent',", 1)
    (d / "triggers.toml").write_text(triggers)
    edited = Labeler(load_rules(d))
    assert edited.label(text).labels["Emphysema"] == 1
    assert edited.label("Absent bleb.").labels["Emphysema"] == 0


def test_bad_rule_files_name_file_and_entry(tmp_path):
    d = copy_rules(tmp_path)
    (d / "mentions.toml").write_text((d / "mentions.toml").read_text() + "\n[findings.Pneumonitis]\nmention = ['x']\n")
    with pytest.raises(CxrkitError, match=r"mentions\.toml.*Pneumonitis"):
        load_rules(d)
    d2 = copy_rules(tmp_path / "b")
    (d2 / "triggers.toml").write_text((d2 / "triggers.toml").read_text().replace('effect = "uncertain"', 'effect = "maybe"', 1))
    with pytest.raises(CxrkitError, match="effect 'maybe'"):
        load_rules(d2)
    (d2 / "triggers.toml").write_text("not [valid toml")
    with pytest.raises(CxrkitError, match="not valid TOML"):
        load_rules(d2)
    with pytest.raises(CxrkitError, match="rules folder not found"):
        load_rules(tmp_path / "nope")
