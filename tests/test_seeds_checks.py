"""Issue 23, scope 4: what the hand review found, with real lines from the Wikipedia seed file and real
SmolLM2 outputs from benchmarks/data/{nli,sts3}_smollm2*.jsonl.gz.

Seeds that are titles / fragments are skipped (counted by reason); demo phrases pasted into outputs
are rejected generically; sts3 intermediates must be sentences.
"""

from __future__ import annotations

from collections import Counter

import pytest

from llmcse.llm import FakeLLM
from llmcse.synth.checks import SENTENCE_FIELDS, check_output, fragment_reason, has_verb
from llmcse.synth.generate import GenerateConfig, run_generate
from llmcse.synth.prompts import load_template
from llmcse.synth.seeds import read_seeds, seed_skip_reason

# ------------------------------------------------------------------ seeds

SKIPPED = [  # real lines of ../shared/data/unlabeled/wiki_sentences.txt
    ("Rasmus Jensen may refer to:", "seed_disambiguation"),
    ("Circus Renz was a German circus company, the name of which may also refer to:", "seed_disambiguation"),
    ("Notable people with the surname include:", "seed_list_intro"),
    ("These 13 species belong to the genus \"Platycotis\":", "seed_list_intro"),
    ("2020 BWF Continental Circuit", "seed_title"),
    ("List of fellows of IEEE Power Electronics Society", "seed_title"),
    ("1886 - 1900 John James Virgo.", "seed_title"),  # a heading, even with a full stop
    ("Arnold Schönberg complete edition", "seed_title"),  # no end punctuation, no verb
    ("On 8 September 2019 in the Sanmatenga Province, Burkina Faso.", "seed_title"),
    ("!colspan=12 style=| Non-conference regular season", "seed_markup"),
    ("organisation and later was placed in charge of all Australian War Services in the European Zone.",
     "seed_fragment"),  # the tail of a sentence split in two
    ("She competed for the South Africa women's national water polo team in the 2017 World Aquatics "
     "Championships,", "seed_fragment"),
    ("Srđan Darmanović (born July 18, 1961 in Cetinje), is a Montenegrin politician, diplomat and professor "
     "at University of Montenegro Faculty of", "seed_fragment"),  # cut off
    ("Furth (b Deisenhofen) station", "seed_fragment"),  # mostly a parenthesis
    ("See https://www.example.org/list for all the results of the season", "seed_url"),
]

KEPT = [  # real sentences that must stay seeds
    "Since that time the YMCA has operated continuously, been part of the fabric of the state and served "
    "the community of South Australia",  # no full stop, but a sentence
    "In 2000 he brought the American conductor Kent Nagano to Berlin and became his dramaturgical consultant",
    "de Chazan was granted a separation of property(1651) and of body (1673).",  # lowercase name particle
    "Brian Orndorf of Blu-ray.com called the film \"ridiculous\".",  # a site name, not a URL
    "He died in 1956.",
    "Mikko Hokka (5 February 1932 – 18 August 1973) was a Finnish weightlifter.",
    "A small boat sails across the calm blue lake.",
]


@pytest.mark.parametrize("line, reason", SKIPPED)
def test_seed_titles_and_fragments_are_skipped_with_their_reason(line, reason):
    assert seed_skip_reason(line, 4, 64) == reason


@pytest.mark.parametrize("line", KEPT)
def test_real_sentences_stay_seeds(line):
    assert seed_skip_reason(line, 4, 64) is None


def test_generation_summary_counts_skipped_seeds_by_reason(tmp_path):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("\n".join([line for line, _ in SKIPPED] + KEPT) + "\n", encoding="utf-8")
    before = seeds.read_bytes()
    usable, skipped = read_seeds(seeds)
    assert usable == KEPT
    assert skipped == Counter(reason for _, reason in SKIPPED)
    summary = run_generate(GenerateConfig(recipe="nli", seeds=str(seeds), out=str(tmp_path / "g.jsonl"), n=2),
                           llm=FakeLLM(), show_progress_bar=False)
    assert summary["seeds_skipped"] == {"seed_disambiguation": 2, "seed_list_intro": 2, "seed_title": 5,
                                        "seed_markup": 1, "seed_fragment": 4, "seed_url": 1}
    assert seeds.read_bytes() == before  # the user's seed file is only read


# ------------------------------------------------------------------ demo leaks

NLI_DEMOS = load_template("nli").demo_texts
STS3_DEMOS = load_template("sts3").demo_texts

LEAKS = [  # (seed, output) from the committed data; each pastes a demo phrase the seed does not have
    ("Stafford acting General Secretary.", "On Tuesday, General Secretary Stafford was announced."),
    ("His sister, Agnes Oguntayo, is also a fashion model.", "On Wednesday, Agnes Oguntayo is a fashion model."),
    ("His sister, Agnes Oguntayo, is also a fashion model.", "A man is also a fashion model, not Agnes Oguntayo."),
    ("It has jurisdiction over the field of veterinary and animal sciences in Bihar.",
     "The committee has jurisdiction over the field of veterinary and animal sciences in India."),
    ("Track listing adapted from bandcamp", "A budget adapted from bandcamp."),
]

CLEAN = [  # (seed, output): no demo phrase, or only what the seed itself says
    ("A meeting of promoters was also held at Presbyterian Church.",
     "A meeting of special advisers was held at Presbyterian Church."),
    ("It has jurisdiction over the field of veterinary and animal sciences in Bihar.",
     "It has jurisdiction over the field of veterinary and animal sciences in the state of Bihar."),
    ("The committee met on Tuesday in Adelaide.", "On Tuesday the committee met in Adelaide."),
    ("A man is riding a horse along the beach.", "A man is riding along the sand."),
]


@pytest.mark.parametrize("seed, output", LEAKS)
def test_pasted_demo_phrases_are_copied_demo(seed, output):
    assert check_output(output, seed, demo_texts=STS3_DEMOS) == "copied_demo"
    assert check_output(output, seed, demo_texts=NLI_DEMOS) == "copied_demo"


@pytest.mark.parametrize("seed, output", CLEAN)
def test_outputs_without_demo_phrases_pass(seed, output):
    assert check_output(output, seed, demo_texts=STS3_DEMOS) is None


# ------------------------------------------------------------------ sts3 intermediates

FRAGMENTS = [  # (seed, intermediate) from sts3_smollm2.jsonl.gz
    ("It includes lists of awards by the Association for Computing Machinery, the Institute of Electrical and "
     "Electronics Engineers, other computer science and information science awards, and a list of computer "
     "science competitions.", "A list of computer science competitions.", "no verb-like word"),
    ("She was elected as a member of the Legislative Assembly of Jharkhand from Mahagama.",
     "A member of the Legislative Assembly of Jharkhand.", "no verb-like word"),
    ("Simone Reed, aged 28, is from Teesside.", "Teesside.", "fewer than 3 words"),
]

SENTENCES = [
    ("Mats Wilander defeated Marcelo Filippini 6–1, 6–2.", "The team defeated Marcelo Filippini, 6–1, 6–2."),
    ("In 1956 he negotiated the purchase of the Presbyterian Church in Flinders Street.", "He bought a church."),
    ("The river crosses the forest zone from north to south before it reaches the lake.",
     "The river flows over the forest zone."),
    ("She taught history at White Plains High School before she married in 1962.", "She taught history."),
]


@pytest.mark.parametrize("seed, intermediate, why", FRAGMENTS)
def test_fragment_intermediates_are_not_a_sentence(seed, intermediate, why):
    assert "intermediate" in SENTENCE_FIELDS
    assert fragment_reason(intermediate) == why
    assert check_output(intermediate, seed, demo_texts=STS3_DEMOS, require_sentence=True) == "not_a_sentence"
    assert check_output(intermediate, seed, demo_texts=STS3_DEMOS) is None  # other fields are not held to it


@pytest.mark.parametrize("seed, intermediate", SENTENCES)
def test_sentence_intermediates_pass(seed, intermediate):
    assert has_verb(intermediate)
    assert check_output(intermediate, seed, demo_texts=STS3_DEMOS, require_sentence=True) is None


def test_generation_rejects_fragment_intermediates_and_counts_the_reason(tmp_path):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("\n".join(KEPT[3:5]) + "\n", encoding="utf-8")

    def responder(prompt, i):  # an intermediate that is a noun phrase, the other fields fine
        if prompt.startswith("Shorten"):
            return "A famous critic."
        return "Someone wrote about it in a review." if prompt.startswith("Paraphrase") else "Nobody wrote about it."

    out = tmp_path / "g.jsonl"
    summary = run_generate(GenerateConfig(recipe="sts3", seeds=str(seeds), out=str(out), max_attempts=2),
                           llm=FakeLLM(responder=responder), show_progress_bar=False)
    assert (summary["kept"], summary["rejected"]) == (0, 2)
    assert summary["field_rejections_by_reason"]["not_a_sentence"] == 2 * 2
    assert summary["rejected_by_final_reason"] == {"not_a_sentence": 2}
