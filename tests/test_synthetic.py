"""The synthetic arithmetic task: deterministic, disjoint splits, gold solutions pass the step checker, errors fail."""
import random

import pytest

from dsmath.data import synthetic as syn


def test_splits_deterministic_and_disjoint():
  tr = syn.make_split("train", 300, seed=1)
  te = syn.make_split("test", 100, seed=1)
  assert [p.question for p in tr] == [p.question for p in syn.make_split("train", 300, seed=1)]
  assert len({p.question for p in tr}) == 300
  assert not {p.question for p in tr} & {p.question for p in te}
  # another seed's test split is still disjoint from this train split (split is a property of the question)
  assert not {p.question for p in tr} & {p.question for p in syn.make_split("test", 100, seed=7)}
  assert {p.question for p in tr} != {p.question for p in syn.make_split("train", 300, seed=2)}


@pytest.mark.parametrize("style", ["equations", "words"])
def test_gold_solutions_check_and_alphabet(style):
  d = syn.Difficulty(min_steps=1, max_steps=4, ops=syn.OPS, style=style)
  rng = random.Random(0)
  alphabet = set(syn.alphabet(d))
  for _ in range(500):
    p = syn.generate_problem(rng, d)
    chk = syn.check_steps(p.solution, p.question)
    assert chk.all_correct, (p, chk)
    assert syn.boxed_answer(p.solution) == p.answer
    assert set(p.prompt + p.solution) <= alphabet
    assert 0 <= int(p.answer) <= d.max_value


def test_difficulty_controls_steps_and_numbers():
  easy = syn.make_split("train", 50, difficulty=syn.Difficulty(min_steps=1, max_steps=1, ops=("+",), max_number=9))
  for p in easy:
    steps, _ = syn.split_steps(p.solution)
    assert len(steps) == 2  # one equation and the boxed answer
    assert all(int(x) <= 18 for x in syn._EQUATION.findall(p.solution)[0][::2])
  hard = syn.make_split("train", 50, difficulty=syn.Difficulty(min_steps=4, max_steps=4))
  assert min(len(syn.split_steps(p.solution)[0]) for p in hard) >= 5


def test_checker_flags_wrong_steps_and_ends():
  text = "3 + 4 = 8\n8 * 2 = 16\n\\boxed{16}"
  chk = syn.check_steps(text)
  assert chk.correct == (False, True, True)
  assert chk.ends == (10, 21, len(text))
  assert [text[e - 1] for e in chk.ends] == ["\n", "\n", "}"]
  assert syn.check_steps("6 / 4 = 1\n\\boxed{2}").correct == (False, False)  # inexact division; boxed != last
  assert syn.check_steps("5 - 7 = -2").correct == (True,)
  assert syn.check_steps("so the answer is big\n\\boxed{3}").correct == (False, False)


def test_checker_grounding_with_question():
  q = "Ann has 7 pens. She buys 3 more. How many pens does Ann have?"
  assert syn.check_steps("7 + 3 = 10\n\\boxed{10}", q).all_correct
  # right arithmetic on numbers that are not in the question nor earlier results
  assert syn.check_steps("2 + 2 = 4\n\\boxed{4}", q).correct == (False, True)
  assert syn.check_steps("2 + 2 = 4\n\\boxed{4}").all_correct  # without the question only arithmetic is checked


def test_custom_separator_and_empty_steps():
  steps, ends = syn.split_steps("1 + 1 = 2 ki 2 + 2 = 4 ki ", separator=" ki ")
  assert steps == ["1 + 1 = 2", "2 + 2 = 4"] and ends == [13, 26]
  assert syn.split_steps("a\n\n\nb")[0] == ["a", "b"]
  with pytest.raises(ValueError, match="separator"):
    syn.split_steps("a", separator="")


def test_bad_difficulty_and_split_errors():
  with pytest.raises(ValueError, match="ops"):
    syn.Difficulty(ops=("^",))
  with pytest.raises(ValueError, match="min_steps"):
    syn.Difficulty(min_steps=3, max_steps=2)
  with pytest.raises(ValueError, match="split"):
    syn.make_split("valid", 3)
  with pytest.raises(ValueError, match="distinct"):
    syn.make_split("train", 10_000, difficulty=syn.Difficulty(min_steps=1, max_steps=1, ops=("+",), max_number=2))
