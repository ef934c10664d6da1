"""SessionStore and OpenSession: create, append, reopen, states, undo, fork, rename, delete."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from store_helpers import FP, add_turns, make_session, make_state, make_store, make_turn

from weprompt_cli.errors import ConflictError, InvalidFileError, LockedError, NotFoundError, UsageError
from weprompt_cli.store import SessionMeta, StateUnavailable, Turn, as_state_list


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) and x.dtype == y.dtype for x, y in zip(a, b))


def test_appended_turns_and_states_survive_reopen() -> None:
    store = make_store()
    with make_session(store) as s:
        add_turns(s, 3)
        assert s.meta.turns == 3 and s.meta.tokens == 18
    with store.open("demo") as s:
        assert [t.index for t in s.turns()] == [1, 2, 3]
        assert s.turns()[1] == make_turn(2).__class__(**s.turns()[1].__dict__)
        assert s.turns()[2].user == "question 3"
        assert _same(as_state_list(s.load_state(2, fingerprint=FP)), make_state(2))
        assert _same(as_state_list(s.load_state(0, fingerprint=FP)), make_state(0))
        assert s.state_turns() == [0, 1, 2, 3]


def test_state_round_trips_bf16_and_dict_input() -> None:
    store = make_store()
    with make_session(store) as s:
        state = {
            "s000": torch.arange(6, dtype=torch.bfloat16).reshape(2, 3),
            "s001": torch.ones(2, dtype=torch.float16),
        }
        s.append_turn(make_turn(1), state, fingerprint=FP)
        back = s.load_state(1, fingerprint=FP)
        assert back.keys() == state.keys()
        assert all(torch.equal(back[k], state[k]) and back[k].dtype == state[k].dtype for k in state)


def test_text_with_unicode_line_separators_round_trips() -> None:
    store = make_store()
    odd = "a\u2028b\u2029c\x85d\r\ne \ud800 \U0001f600"
    with make_session(store) as s:
        s.append_turn(make_turn(1, user=odd), make_state(1), fingerprint=FP)
        s.append_turn(make_turn(2), make_state(2), fingerprint=FP)
    with store.open("demo") as s:
        assert [t.user for t in s.turns()] == [odd, "question 2"]


def test_load_state_reasons_and_nearest_state() -> None:
    store = make_store()
    with make_session(store) as s:
        add_turns(s, 5)
        # 5: truncated, 4: another model, 3: garbage header, 2: missing
        p5 = s.state_path(5)
        p5.write_bytes(p5.read_bytes()[:-100])
        s.save_state(4, make_state(4), fingerprint="other-model")
        s.state_path(3).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
        s.state_path(2).unlink()
        reasons = {}
        for k in (5, 4, 3, 2):
            with pytest.raises(StateUnavailable) as err:
                s.load_state(k, fingerprint=FP)
            reasons[k] = err.value.reason
        assert reasons == {5: "truncated", 4: "fingerprint", 3: "corrupt", 2: "missing"}
        skipped: list[StateUnavailable] = []
        found = s.nearest_state(5, fingerprint=FP, skipped=skipped)
        assert found is not None
        k, tensors = found
        assert k == 1 and _same(as_state_list(tensors), make_state(1))
        assert [e.reason for e in skipped] == ["truncated", "fingerprint", "corrupt"]


def test_state_with_flipped_data_byte_is_corrupt() -> None:
    store = make_store()
    with make_session(store) as s:
        add_turns(s, 1)
        p = s.state_path(1)
        data = bytearray(p.read_bytes())
        data[-5] ^= 0xFF
        p.write_bytes(bytes(data))
        with pytest.raises(StateUnavailable) as err:
            s.load_state(1, fingerprint=FP)
        assert err.value.reason == "corrupt" and "checksum" in err.value.message


def test_foreign_safetensors_file_is_wrong_format() -> None:
    from safetensors.torch import save

    store = make_store()
    with make_session(store) as s:
        add_turns(s, 2)
        s.state_path(2).write_bytes(save({"w": torch.zeros(2)}))
        s.state_path(1).write_bytes(s.state_path(0).read_bytes())  # the state of another turn
        for k in (2, 1):
            with pytest.raises(StateUnavailable) as err:
                s.load_state(k, fingerprint=FP)
            assert err.value.reason == "format"


def test_deleted_states_dir_gives_no_state_and_heals_on_save() -> None:
    import shutil

    store = make_store()
    with make_session(store) as s:
        add_turns(s, 3)
        shutil.rmtree(s.states_dir)
        with pytest.raises(StateUnavailable) as err:
            s.load_state(3, fingerprint=FP)
        assert err.value.reason == "missing"
        assert s.nearest_state(3, fingerprint=FP) is None
        s.save_state(3, make_state(3), fingerprint=FP)  # what replay does after rebuilding
        assert s.nearest_state(3, fingerprint=FP) is not None
    with store.open("demo") as s:
        assert len(s.turns()) == 3


def test_torn_final_line_is_cut_and_meta_recounted_on_open() -> None:
    store = make_store()
    with make_session(store) as s:
        add_turns(s, 2)
        tpath = s.path / "transcript.jsonl"
        meta_before = json.loads((s.path / "session.json").read_text())
    # A crash after the transcript line but before session.json, then a torn append.
    with open(tpath, "a") as f:
        f.write(json.dumps(make_turn(3).to_dict()) + "\n")
        f.write('{"index": 4, "user": "half')
    assert meta_before["turns"] == 2
    with store.open("demo") as s:
        assert len(s.turns()) == 3 and s.meta.turns == 3 and s.meta.tokens == 18
        assert tpath.read_bytes().endswith(b"\n")
        assert json.loads((s.path / "session.json").read_text())["turns"] == 3
        s.append_turn(make_turn(4), make_state(4), fingerprint=FP)
    with store.open("demo") as s:
        assert [t.index for t in s.turns()] == [1, 2, 3, 4]


def test_state_newer_than_transcript_is_dropped_on_open() -> None:
    store = make_store()
    with make_session(store) as s:
        add_turns(s, 2)
        # What a crash between the state write and the transcript append leaves.
        s._write_state(3, make_state(3), fingerprint=FP, tokens=0)
        assert s.state_path(3).exists()
    with store.open("demo") as s:
        assert s.state_turns() == [0, 1, 2]


def test_drop_last_turn_and_truncate() -> None:
    store = make_store()
    with make_session(store) as s:
        add_turns(s, 4)
        dropped = s.drop_last_turn()
        assert dropped.index == 4 and len(s.turns()) == 3 and s.state_turns() == [0, 1, 2, 3]
        removed = s.truncate_to(1)
        assert [t.index for t in removed] == [2, 3]
        assert s.meta.turns == 1 and s.meta.tokens == 6 and s.state_turns() == [0, 1]
        s.append_turn(make_turn(2, user="again"), make_state(22), fingerprint=FP)
    with store.open("demo") as s:
        assert [t.user for t in s.turns()] == ["question 1", "again"]
        assert s.drop_last_turn().user == "again"
        s.truncate_to(0)
        with pytest.raises(UsageError):
            s.drop_last_turn()


def test_append_turn_refuses_a_wrong_index() -> None:
    with make_session(make_store()) as s, pytest.raises(ValueError):
        s.append_turn(make_turn(2), make_state(2), fingerprint=FP)


def test_resolve_by_name_id_and_prefix() -> None:
    store = make_store()
    a = make_session(store, name="alpha")
    b = make_session(store, name=None)
    a.close()
    b.close()
    assert store.resolve("alpha").id == a.meta.id
    assert store.resolve(b.meta.id).id == b.meta.id
    with pytest.raises(NotFoundError) as err:
        store.resolve("nope")
    assert err.value.hint == "weprompt list-sessions"
    common = a.meta.id[:4]  # both were made this year
    with pytest.raises(UsageError) as amb:
        store.resolve(common)
    assert a.meta.id in amb.value.message and b.meta.id in amb.value.message
    assert store.last().id == b.meta.id


def test_name_taken_is_a_conflict_pointing_to_resume() -> None:
    store = make_store()
    make_session(store, name="taken").close()
    with pytest.raises(ConflictError) as err:
        make_session(store, name="taken")
    assert err.value.hint == "weprompt resume taken"


def test_update_meta_changes_model_and_keeps_counts() -> None:
    store = make_store()
    with make_session(store) as s:
        add_turns(s, 1)
        s.update_meta(model={"path": "/m/b.pth", "fingerprint": "fp2", "arch": "v7"}, extra={"prefix": "x"})
    meta = store.resolve("demo")
    assert meta.model.fingerprint == "fp2" and meta.extra == {"prefix": "x"} and meta.turns == 1


def test_fork_copies_turns_and_states_up_to_n() -> None:
    store = make_store()
    with make_session(store) as s:
        add_turns(s, 4)
        src_id = s.meta.id
    meta = store.fork("demo", 2, "branch")
    assert meta.name == "branch" and meta.turns == 2 and meta.parent is not None
    assert (meta.parent.session, meta.parent.turn) == (src_id, 2)
    with store.open("branch") as f:
        assert [t.index for t in f.turns()] == [1, 2]
        assert f.state_turns() == [0, 1, 2]
        assert _same(as_state_list(f.load_state(2, fingerprint=FP)), make_state(2))
        f.append_turn(make_turn(3, user="other way"), make_state(33), fingerprint=FP)
    with store.open("demo") as s:  # the parent is untouched by the fork's new turn
        assert s.turns()[2].user == "question 3"
        assert _same(as_state_list(s.load_state(3, fingerprint=FP)), make_state(3))
    assert store.fork("demo", 0).name == "demo-at0"
    with pytest.raises(UsageError):
        store.fork("demo", 9)
    with pytest.raises(ConflictError):
        store.fork("demo", 1, "branch")


def test_rename_and_delete() -> None:
    store = make_store()
    make_session(store, name="old").close()
    make_session(store, name="other").close()
    assert store.rename("old", "new").name == "new"
    assert store.resolve("new").name == "new"
    with pytest.raises(NotFoundError):
        store.resolve("old")
    with pytest.raises(ConflictError):
        store.rename("new", "other")
    s = store.open("new")
    with pytest.raises(LockedError):
        store.delete("new")
    s.close()
    folder = store.session_dir(store.resolve("new").id)
    store.delete("new")
    assert not folder.exists()
    assert [m.name for m in store.list()[0]] == ["other"]


def test_list_newest_first_with_persona_filter_and_problems() -> None:
    store = make_store()
    with make_session(store, name="one", persona="sql") as s:
        add_turns(s, 1)
    with make_session(store, name="two", persona="project") as s:
        add_turns(s, 2)
    with make_session(store, name="three", persona="sql") as s:
        add_turns(s, 1)
        three = s.path
    with make_session(store, name="four") as s:
        four = s.path
    (four / "session.json").write_text("{ broken")
    lines = (three / "transcript.jsonl").read_text().splitlines()
    (three / "transcript.jsonl").write_text(lines[0] + "\n" + "garbage\n")
    metas, problems = store.list()
    assert [m.name for m in metas] == ["three", "two", "one"]
    assert [m.turns for m in metas] == [1, 2, 1]
    by_file = {p.path.name: p for p in problems}
    assert by_file["session.json"].path.parent == four and "damaged session.json" in by_file["session.json"].message
    assert by_file["transcript.jsonl"].line == 2 and by_file["transcript.jsonl"].path.parent == three
    assert [m.name for m in store.list(persona="sql")[0]] == ["three", "one"]
    with pytest.raises(InvalidFileError) as err:
        store.open("three")
    assert "line 2" in err.value.message and "--at 1" in (err.value.hint or "")


def test_retention_thins_old_states_and_nearest_state_still_finds_one() -> None:
    per_state = len(make_state(0)[0].numpy().tobytes()) * 6 + 400
    store = make_store(state_budget_bytes=per_state * 8, keep_latest=3)
    with make_session(store) as s:
        add_turns(s, 30)
        kept = s.state_turns()
        total = sum(s.state_path(k).stat().st_size for k in kept)
        assert total <= per_state * 8
        assert 0 in kept and kept[-3:] == [28, 29, 30]
        assert len(kept) < 31
        k, _ = s.nearest_state(27, fingerprint=FP) or (None, None)
        assert k is not None and k <= 27 and k in kept


def test_store_imports_no_torch() -> None:
    import subprocess

    code = "import sys, weprompt_cli.store; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_turn_and_meta_round_trip_dicts() -> None:
    t = make_turn(3, stop="interrupted")
    assert Turn.from_dict(t.to_dict()) == t
    with make_session(make_store()) as s:
        assert SessionMeta.from_dict(s.meta.to_dict()) == s.meta


def test_state_metadata_counts_prefix_and_conversation_tokens() -> None:
    from weprompt_cli.store.states import read_header

    store = make_store()
    with make_session(store) as s:
        s.save_state(0, make_state(0), fingerprint=FP, tokens=7)
        assert s.meta.prefix_tokens == 7
        s.append_turn(make_turn(1), make_state(1), fingerprint=FP)
        s.append_turn(make_turn(2), make_state(2), fingerprint=FP)
        _, md0, _ = read_header(s.state_path(0), 0)
        _, md2, _ = read_header(s.state_path(2), 2)
        assert (md0["tokens"], md2["tokens"], md2["turn"], md2["arch"]) == ("7", "19", "2", "v7")
        assert md2["fingerprint"] == FP and md2["format"] == "weprompt-state"
        s.save_state(1, make_state(1), fingerprint=FP)  # a rebuilt state: tokens from the transcript
        assert read_header(s.state_path(1), 1)[1]["tokens"] == "13"
    assert store.resolve("demo").prefix_tokens == 7


def test_following_the_damaged_transcript_hint_recovers_the_good_turns() -> None:
    store = make_store()
    with make_session(store) as s:
        add_turns(s, 3)
        tpath = s.path / "transcript.jsonl"
    lines = tpath.read_text().splitlines()
    lines[2] = lines[2].replace('"index":3', '"index":"three"')
    tpath.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidFileError) as err:
        store.open("demo")
    assert err.value.hint == "weprompt sessions fork demo --at 2 keeps the 2 turns before it"
    meta = store.fork("demo", 2)
    with store.open(meta.id) as f:
        assert len(f.turns()) == 2 and f.load_state(2, fingerprint=FP)


def test_bytes_of_a_failed_append_are_cut_before_the_next_turn() -> None:
    store = make_store()
    with make_session(store) as s:
        add_turns(s, 2)
        tpath = s.path / "transcript.jsonl"
        with open(tpath, "a") as f:  # what ENOSPC or Ctrl-C in the middle of an append leaves
            f.write('{"index":3,"user":"par')
        s.append_turn(make_turn(3), make_state(3), fingerprint=FP)
        with open(tpath, "a") as f:  # a whole line the caller never saw succeed
            f.write(json.dumps(make_turn(4).to_dict()) + "\n")
        s.append_turn(make_turn(4, user="the real four"), make_state(4), fingerprint=FP)
    with store.open("demo") as s:
        assert [t.index for t in s.turns()] == [1, 2, 3, 4] and s.turns()[3].user == "the real four"


def test_plan_eviction_keeps_prefix_latest_and_fits() -> None:
    from weprompt_cli.store import plan_eviction

    sizes = dict.fromkeys(range(41), 10)
    assert plan_eviction(sizes, budget_bytes=1000) == set()
    evict = plan_eviction(sizes, budget_bytes=120, keep_latest=3, protect=[13])
    kept = set(sizes) - evict
    assert {0, 13, 38, 39, 40} <= kept and sum(sizes[k] for k in kept) <= 120
    assert len(kept) >= 8  # spaced checkpoints, not only the ones that must stay
    assert plan_eviction(sizes, budget_bytes=5, keep_latest=3) == set(sizes) - {0, 38, 39, 40}
