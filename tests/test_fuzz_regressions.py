"""Every saved fuzz input replayed through the fuzzer's own checks, without atheris.

Seeds live in fuzz/corpus/<target>/ and crashing inputs in fuzz/crashes/<target>-<sha1>.bin
(fuzz/run.py saves them there), so an input that once broke a check stays a test. Bugs the
fuzzer found that are not fixed yet are strict xfails below, and listed in
`fuzz.checks.OPEN_ISSUES` so the fuzzer does not stop on them again: once a fix makes one of
these pass, drop its xfail and its entry there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.responses import Response

from edge_personalize.forms import safe_next
from fuzz.checks import BANNER, TARGETS, replace, rewrite

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"


def saved_inputs() -> list[object]:
    cases: list[object] = []
    for target in TARGETS:
        for path in sorted((FUZZ / "corpus" / target).glob("*.bin")):
            cases.append(pytest.param(target, path, id=f"corpus/{target}/{path.stem}"))
    for path in sorted((FUZZ / "crashes").glob("*.bin")):
        cases.append(pytest.param(path.name.partition("-")[0], path, id=path.stem))
    return cases


@pytest.mark.parametrize(("target", "path"), saved_inputs())
def test_saved_input_passes_the_fuzz_checks(target: str, path: Path) -> None:
    assert target in TARGETS, f"{path.name}: name saved inputs <target>-<sha1>.bin, target one of {sorted(TARGETS)}"
    TARGETS[target](path.read_bytes())


def test_every_target_has_seeds() -> None:
    for target in TARGETS:
        assert list((FUZZ / "corpus" / target).glob("*.bin")), f"fuzz/corpus/{target}/ has no seed inputs"


# Open issue "slot-cap-boundary": a run of text that crosses max_slot_bytes inside a slot jumps
# past the cap, and the first tag after it is still read as slot content in one piece, but not
# when a chunk ends between the cap and that tag. What comes next then depends on the chunking.
OVER_CAP = b'<div data-personalize="a">' + b"x" * 65


def test_a_slot_right_after_an_oversized_slot_is_found_whatever_the_chunking() -> None:
    html = OVER_CAP + b'<section data-personalize="b">inner</section>'
    whole = rewrite(html, [], replace, max_slot_bytes=64)
    cut_after_the_text = rewrite(html, [len(OVER_CAP)], replace, max_slot_bytes=64)
    assert cut_after_the_text[1] == [("b", b"inner")]
    assert whole == cut_after_the_text


def test_the_body_end_after_an_oversized_slot_gets_the_insertion_whatever_the_chunking() -> None:
    html = OVER_CAP + b"</body></html>"
    whole = rewrite(html, [], replace, max_slot_bytes=64, before_body_end=BANNER)
    cut_after_the_text = rewrite(html, [len(OVER_CAP)], replace, max_slot_bytes=64, before_body_end=BANNER)
    assert cut_after_the_text[0] == OVER_CAP + BANNER + b"</body></html>"
    assert whole == cut_after_the_text


def test_a_non_ascii_return_path_can_be_sent_as_a_location_header() -> None:
    response = Response(status_code=303, headers={"location": safe_next("/€")})
    assert response.headers["location"] == "/%E2%82%AC"
