"""One conformance suite for the run store, run against file://, memory:// and a real S3 server."""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from agentic import names
from agentic.contracts import (
    StepError,
    StepResult,
    encode,
)
from agentic.errors import DecodeError, StoreError, UnknownRunError, UnsafeIdError
from agentic.store import RunStore, load_spec, open_store
from agentic.store.index import IndexVersion, OpenRun
from tests.factories import T0, run_record, step_result, step_spec

UNSAFE_IDS = ["../escape", "a b", "x" * 200, ".hidden", "a/b", ""]


def put_raw(store: RunStore, rel: str, data: bytes) -> None:
    """Write bytes behind the store's back (a damaged or foreign file)."""
    path = f"{store.root}/{rel}"
    store.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    store.fs.pipe_file(path, data)


def stored_files(store: RunStore) -> list[str]:
    """Every file under the store's root (an empty list for a store nothing was written to)."""
    try:
        return sorted(store.fs.find(store.root))
    except FileNotFoundError:
        return []


# Only the S3 store needs a process: the moto server.
@pytest.fixture(params=["file", "memory", pytest.param("s3", marks=pytest.mark.procs)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStore]:
    """An empty store of each kind, at a root no other test uses."""
    if request.param == "file":
        yield open_store((tmp_path / "store").as_uri())
    elif request.param == "memory":
        # fsspec's memory filesystem is process-global: a unique root isolates this test.
        opened = open_store(f"memory://store-{uuid.uuid4().hex}")
        yield opened
        if opened.fs.exists(opened.root):
            opened.fs.rm(opened.root, recursive=True)
    else:
        server = request.getfixturevalue("s3_server")
        yield open_store(server.unique_url(), **server.storage_options)


# --- runs ------------------------------------------------------------------------------


def test_a_created_run_reads_back_equal_with_its_timestamps(store: RunStore) -> None:
    record = run_record("run-1", finished_at=T0 + timedelta(minutes=3))

    assert store.create_run(record) is True

    read = store.read_run("run-1")
    assert read == record
    assert read.created_at == T0 and read.created_at.tzinfo is not None
    assert store.run_exists("run-1")


def test_creating_an_existing_run_returns_false_and_keeps_the_first_record(
    store: RunStore,
) -> None:
    store.create_run(run_record("run-1", labels={"who": "first"}))

    assert store.create_run(run_record("run-1", labels={"who": "second"})) is False
    assert store.read_run("run-1").labels == {"who": "first"}


def test_an_unknown_run_raises_unknown_run_error_naming_it(store: RunStore) -> None:
    assert not store.run_exists("nope")
    with pytest.raises(UnknownRunError, match="nope") as info:
        store.read_run("nope")
    assert info.value.run_id == "nope"


def test_write_run_replaces_the_record(store: RunStore) -> None:
    store.create_run(run_record("run-1"))

    store.write_run(run_record("run-1", status="succeeded", output="the answer"))

    read = store.read_run("run-1")
    assert (read.status, read.output) == ("succeeded", "the answer")


def test_runs_are_listed_newest_first(store: RunStore) -> None:
    for run_id, minutes in [("b-middle", 5), ("c-oldest", 0), ("a-newest", 10)]:
        store.create_run(run_record(run_id, created_at=T0 + timedelta(minutes=minutes)))

    assert [r.run_id for r in store.list_runs()] == ["a-newest", "b-middle", "c-oldest"]


def test_more_runs_than_concurrent_reads_are_all_listed_in_order(store: RunStore) -> None:
    # S3 reads run.json documents several at a time: more runs than that, one damaged.
    for minutes in range(40):
        store.create_run(
            run_record(f"run-{minutes:02d}", created_at=T0 + timedelta(minutes=minutes))
        )
    put_raw(store, names.run_json("run-damaged"), b"{")

    assert [r.run_id for r in store.list_runs()] == [f"run-{m:02d}" for m in reversed(range(40))]


def test_a_cancel_request_is_kept_as_first_written(store: RunStore) -> None:
    store.create_run(run_record("run-1"))
    assert store.cancel_request("run-1") is None

    assert store.request_cancel("run-1", {"reason": "first"})
    assert not store.request_cancel("run-1", {"reason": "second"})

    assert store.cancel_request("run-1") == {"reason": "first"}
    assert [r.run_id for r in store.list_runs()] == ["run-1"]  # not mistaken for a run


def test_an_empty_store_lists_no_runs_and_no_steps(store: RunStore) -> None:
    assert store.list_runs() == []
    assert store.list_step_ids("run-1") == []
    assert store.read_attempts("run-1", "research") == []


def test_a_damaged_run_json_is_a_decode_error_naming_the_file_and_is_skipped_by_list_runs(
    store: RunStore,
) -> None:
    store.create_run(run_record("good"))
    put_raw(store, names.run_json("bad"), b'{"run_id": "bad", "stat')

    with pytest.raises(DecodeError, match=r"runs/bad/run\.json"):
        store.read_run("bad")
    assert [r.run_id for r in store.list_runs()] == ["good"]


# --- the runs index ----------------------------------------------------------------------


def headline_ids(store: RunStore, **filters: object) -> list[str]:
    return [h.run_id for h in store.headlines(**filters)]  # type: ignore[arg-type]


def test_the_index_lists_runs_newest_first_across_days_and_follows_their_status(
    store: RunStore,
) -> None:
    created = {
        "b-middle": T0 + timedelta(hours=30),
        "c-oldest": T0,
        "a-newest": T0 + timedelta(hours=60),
    }
    for run_id, at in created.items():
        store.create_run(run_record(run_id, created_at=at))
    store.write_run(run_record("c-oldest", status="running"))
    store.write_run(run_record("b-middle", created["b-middle"], status="succeeded", output="x"))

    assert headline_ids(store) == ["a-newest", "b-middle", "c-oldest"]
    assert [(h.run_id, h.status) for h in store.headlines()] == [
        ("a-newest", "pending"),
        ("b-middle", "succeeded"),
        ("c-oldest", "running"),
    ]
    assert headline_ids(store, since=T0 + timedelta(hours=1)) == ["a-newest", "b-middle"]
    assert sorted(m.run_id for m in store.index.open_runs()) == ["a-newest", "c-oldest"]


def test_unfinished_runs_come_from_markers_and_ended_runs_leave_them(store: RunStore) -> None:
    store.create_run(run_record("on-nats", backend="nats", status="running"))
    store.create_run(run_record("local", status="running"))
    store.create_run(run_record("done", backend="nats", status="succeeded"))

    assert [m.run_id for m in store.index.open_runs("nats")] == ["on-nats"]
    assert [r.run_id for r in store.open_runs("nats")] == ["on-nats"]

    store.write_run(run_record("on-nats", backend="nats", status="failed", error="x"))
    assert store.index.open_runs("nats") == []
    assert [m.run_id for m in store.index.open_runs()] == ["local"]


def test_a_marker_left_by_a_crash_is_settled_by_the_reader_that_finds_it(
    store: RunStore,
) -> None:
    store.create_run(run_record("ended", backend="nats", status="running"))
    # A crash between run.json and the marker's removal: run.json says it ended.
    store.fs.pipe_file(
        f"{store.root}/{names.run_json('ended')}",
        encode(run_record("ended", backend="nats", status="succeeded")),
    )
    # A marker of a run whose run.json was never written.
    store.write_model(
        names.open_run_marker("ghost"),
        OpenRun(run_id="ghost", backend="nats", created_at=T0),
    )

    assert [h.status for h in store.headlines()] == ["succeeded"]
    assert store.open_runs("nats") == []  # read, found ended or missing, and settled
    assert store.index.open_runs() == []
    assert [(h.run_id, h.status) for h in store.headlines()] == [("ended", "succeeded")]


def test_a_reindex_after_deleting_the_index_gives_the_same_listing(store: RunStore) -> None:
    for minutes in range(25):
        status = "succeeded" if minutes % 3 else "running"
        created = T0 + timedelta(hours=minutes * 7)
        store.create_run(run_record(f"run-{minutes:02d}", created_at=created))
        store.write_run(run_record(f"run-{minutes:02d}", created_at=created, status=status))
    before = [h.model_dump() for h in store.headlines()]
    opened = [m.run_id for m in store.index.open_runs()]

    store.fs.rm(f"{store.root}/{names.INDEX_DIR}", recursive=True)
    assert open_store(store.url, **store.fs.storage_options).index.rebuild() == 25
    reopened = open_store(store.url, **store.fs.storage_options)

    assert [h.model_dump() for h in reopened.headlines()] == before
    assert [m.run_id for m in reopened.index.open_runs()] == opened
    assert len(before) == 25 and len(opened) == 9


def test_a_store_written_before_the_index_is_indexed_by_its_first_reader(
    store: RunStore,
) -> None:
    for n in range(3):
        put_raw(store, names.run_json(f"old-{n}"), encode(run_record(f"old-{n}", status="running")))
    store.create_run(run_record("new", created_at=T0 + timedelta(days=1)))

    assert headline_ids(store) == ["new", "old-2", "old-1", "old-0"]
    assert store.read_model(names.INDEX_VERSION, IndexVersion) is not None
    assert sorted(m.run_id for m in store.index.open_runs()) == ["new", "old-0", "old-1", "old-2"]


def test_gc_of_a_run_removes_its_index_entry_and_marker(store: RunStore) -> None:
    store.create_run(run_record("kept"))
    store.create_run(run_record("gone", created_at=T0 + timedelta(minutes=1)))
    store.write_run(run_record("gone", created_at=T0 + timedelta(minutes=1), status="failed"))

    assert store.delete_run("gone")

    assert headline_ids(store) == ["kept"]
    assert [f for f in stored_files(store) if "gone" in f] == []


def test_a_run_id_too_long_for_an_entry_name_alone_is_indexed(store: RunStore) -> None:
    run_id = "r" * 128
    store.create_run(run_record(run_id, status="running"))

    assert headline_ids(store) == [run_id]
    assert [m.run_id for m in store.index.open_runs()] == [run_id]


# --- specs, attempts, results ------------------------------------------------------------


def test_a_spec_round_trips_and_loads_from_its_url(store: RunStore) -> None:
    spec = step_spec(store_url=store.url)

    url = store.write_spec(spec)

    assert url == store.spec_url("run-1", "research")
    assert url.startswith(store.url + "/")
    assert store.read_spec("run-1", "research") == spec
    assert load_spec(url) == spec


def test_a_missing_spec_raises_unknown_run_error(store: RunStore) -> None:
    with pytest.raises(UnknownRunError, match="research"):
        store.read_spec("run-1", "research")
    with pytest.raises(UnknownRunError, match=r"spec\.json"):
        load_spec(store.spec_url("run-1", "research"))


def test_attempts_read_back_in_attempt_order(store: RunStore) -> None:
    for attempt in (10, 2, 1):
        store.write_attempt(step_result(attempt=attempt, output=f"try {attempt}"))

    attempts = store.read_attempts("run-1", "research")

    assert [a.attempt for a in attempts] == [1, 2, 10]
    assert attempts[0] == step_result(attempt=1, output="try 1")


def test_a_failed_attempt_keeps_its_error(store: RunStore) -> None:
    failed = StepResult(
        run_id="run-1",
        step_id="research",
        attempt=1,
        status="failed",
        error=StepError(type="RateLimit", message="slow down", retryable=True),
    )
    store.write_attempt(failed)

    assert store.read_attempts("run-1", "research") == [failed]


def test_the_first_commit_wins_and_a_second_returns_it_without_overwriting(
    store: RunStore,
) -> None:
    assert store.read_result("run-1", "research") is None
    first, second = step_result(output="first"), step_result(attempt=2, output="second")

    assert store.commit_result(first) == (first, True)
    assert store.commit_result(second) == (first, False)
    assert store.read_result("run-1", "research") == first


def test_concurrent_commits_from_eight_threads_commit_exactly_one(store: RunStore) -> None:
    barrier = threading.Barrier(8)
    outcomes: list[tuple[StepResult, bool]] = []

    def commit(i: int) -> None:
        barrier.wait()
        outcomes.append(store.commit_result(step_result(attempt=i + 1, output=f"thread {i}")))

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    winners = [committed for committed, by_me in outcomes if by_me]
    assert len(outcomes) == 8 and len(winners) == 1
    assert all(committed == winners[0] for committed, _ in outcomes)
    assert store.read_result("run-1", "research") == winners[0]


def test_commit_attempt_records_the_attempt_and_commits_it_once(store: RunStore) -> None:
    first, second = step_result(output="first"), step_result(attempt=2, output="second")

    assert store.commit_attempt(first) == (first, True)
    assert store.commit_attempt(second) == (first, False)

    assert store.read_attempts("run-1", "research") == [first, second]
    assert store.read_result("run-1", "research") == first


def test_steps_with_anything_stored_are_listed(store: RunStore) -> None:
    store.write_spec(step_spec(step_id="write", store_url=store.url))
    store.write_attempt(step_result(step_id="research"))
    store.commit_result(step_result(step_id="edit"))

    assert store.list_step_ids("run-1") == ["edit", "research", "write"]


# --- unsafe ids ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", UNSAFE_IDS)
def test_unsafe_ids_are_refused_before_anything_is_written(store: RunStore, bad: str) -> None:
    calls = [
        lambda: store.read_run(bad),
        lambda: store.run_exists(bad),
        lambda: store.read_spec("run-1", bad),
        lambda: store.spec_url(bad, "research"),
        lambda: store.read_result(bad, "research"),
        lambda: store.read_attempts("run-1", bad),
        lambda: store.list_step_ids(bad),
        lambda: store.write_artifact(bad, "research", "a.txt", b"x"),
        lambda: store.write_artifact("run-1", bad, "a.txt", b"x"),
        lambda: store.copy_artifacts("run-1", bad, "research"),
    ]
    for call in calls:
        with pytest.raises(UnsafeIdError):
            call()
    assert stored_files(store) == []


@pytest.mark.parametrize(
    "relpath", ["../../run.json", "out/../../x", "/abs/../x", "a/.b", "a\\b", "/abs", "a//b"]
)
def test_artifact_paths_cannot_leave_the_step_folder(store: RunStore, relpath: str) -> None:
    with pytest.raises(UnsafeIdError):
        store.write_artifact("run-1", "research", relpath, b"x")
    assert stored_files(store) == []


@pytest.mark.parametrize("path", ["../x.json", "/abs.json", "sessions//x.json", "a/../b.json"])
def test_json_paths_outside_the_store_are_refused(store: RunStore, path: str) -> None:
    with pytest.raises(UnsafeIdError):
        store.write_json(path, {"x": 1})
    with pytest.raises(UnsafeIdError):
        store.read_json(path)
    assert stored_files(store) == []


# --- atomicity ------------------------------------------------------------------------------


def test_a_reader_polling_run_json_never_sees_a_partial_file(store: RunStore) -> None:
    store.create_run(run_record("run-1"))
    path = f"{store.root}/{names.run_json('run-1')}"
    done = threading.Event()
    seen: list[int] = []
    invalid: list[bytes] = []

    def read_until_done() -> None:
        while not done.is_set():
            raw = store.fs.cat_file(path)
            try:
                seen.append(len(json.loads(raw)["labels"].get("pad", "")))
            except ValueError:
                invalid.append(raw[:80])

    reader = threading.Thread(target=read_until_done)
    # Switch threads often, so the reader also runs in the middle of a write.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    reader.start()
    try:
        # At least 100 rewrites, then on until the reader has seen both sizes (a loaded
        # machine can starve the reader thread for a while), within 20 seconds.
        deadline = time.monotonic() + 20
        n = 0

        def enough() -> bool:
            return n >= 100 and len(seen) > 10 and {10, 200_000} <= set(seen)

        while time.monotonic() < deadline and not enough():
            # Sizes alternate between small and ~200 kB, so a torn write would show.
            pad = "x" * (200_000 if n % 2 else 10)
            store.write_run(run_record("run-1", labels={"pad": pad}))
            n += 1
    finally:
        done.set()
        reader.join(timeout=30)
        sys.setswitchinterval(switch_interval)

    assert invalid == []
    assert len(seen) > 10 and {10, 200_000} <= set(seen)


# --- artifacts ------------------------------------------------------------------------------


def test_an_artifact_round_trips_with_its_size_and_mime(store: RunStore) -> None:
    artifact = store.write_artifact(
        "run-1", "research", "out/report.md", "# Otters\n", "text/markdown"
    )

    assert (artifact.path, artifact.mime, artifact.size) == ("out/report.md", "text/markdown", 9)
    assert store.read_artifact("run-1", "research", "out/report.md") == b"# Otters\n"
    assert store.list_artifacts("run-1", "research") == ["out/report.md"]


@pytest.mark.parametrize("relpath", ["_notes.md", "a+b.txt", "_drafts/c++_v1.2.md"])
def test_every_artifact_name_an_agent_may_use_is_stored_listed_and_copied(
    store: RunStore, relpath: str
) -> None:
    assert names.is_safe_artifact_path(relpath)  # what extraction accepts from an output
    store.write_artifact("run-1", "research", relpath, b"x")

    assert store.read_artifact("run-1", "research", relpath) == b"x"
    assert store.list_artifacts("run-1", "research") == [relpath]
    assert store.copy_artifacts("run-1", "run-2", "research") == [relpath]


def test_a_missing_artifact_raises_unknown_run_error(store: RunStore) -> None:
    with pytest.raises(UnknownRunError, match=r"nothing\.txt"):
        store.read_artifact("run-1", "research", "nothing.txt")


def test_copy_artifacts_gives_a_replay_the_same_files(store: RunStore) -> None:
    store.write_artifact("run-1", "research", "notes.txt", b"facts")
    store.write_artifact("run-1", "research", "img/chart.png", b"\x89PNG\x00\x01")
    store.write_artifact("run-1", "other", "unrelated.txt", b"not copied")

    copied = store.copy_artifacts("run-1", "run-2", "research")

    assert copied == ["img/chart.png", "notes.txt"]
    assert store.read_artifact("run-2", "research", "img/chart.png") == b"\x89PNG\x00\x01"
    assert store.list_artifacts("run-2", "research") == copied
    assert store.list_artifacts("run-2", "other") == []
    assert store.read_artifact("run-1", "research", "notes.txt") == b"facts"


# --- small documents and limits ------------------------------------------------------------


def test_small_json_documents_round_trip_and_read_none_when_absent(store: RunStore) -> None:
    path = names.session_json("s1")
    assert store.read_json(path) is None

    store.write_json(path, {"name": "s1", "entries": [{"run_id": "run-1"}]})

    assert store.read_json(path) == {"name": "s1", "entries": [{"run_id": "run-1"}]}


def test_invalid_json_is_a_decode_error_naming_the_file(store: RunStore) -> None:
    put_raw(store, names.session_json("s1"), b"{not json")

    with pytest.raises(DecodeError, match=r"sessions/s1\.json"):
        store.read_json(names.session_json("s1"))


def test_a_damaged_result_is_a_decode_error_naming_the_file(store: RunStore) -> None:
    put_raw(store, names.result_json("run-1", "research"), b"[]")

    with pytest.raises(DecodeError, match=r"steps/research/result\.json") as info:
        store.read_result("run-1", "research")
    assert info.value.raw == b"[]"


def test_an_empty_document_is_a_decode_error_naming_the_file(store: RunStore) -> None:
    put_raw(store, names.run_json("run-1"), b"")

    with pytest.raises(DecodeError, match=r"runs/run-1/run\.json"):
        store.read_run("run-1")


def test_documents_larger_than_the_limit_are_refused_on_write_and_on_read(
    store: RunStore,
) -> None:
    small = RunStore(store.fs, store.root, store.writer, max_doc_bytes=2_000)
    with pytest.raises(StoreError, match=r"run\.json.*exceeds the limit of 2000 bytes"):
        small.create_run(run_record("run-1", labels={"pad": "x" * 3_000}))
    assert stored_files(store) == []

    store.create_run(run_record("run-1", labels={"pad": "x" * 3_000}))
    with pytest.raises(DecodeError, match=r"run\.json: larger than the limit of 2000 bytes"):
        small.read_run("run-1")


def test_a_run_json_over_the_limit_keeps_the_start_of_its_output_and_says_where_the_rest_is(
    store: RunStore,
) -> None:
    small = RunStore(store.fs, store.root, store.writer, max_doc_bytes=100_000)
    small.create_run(run_record("run-1", status="running"))

    small.write_run(run_record("run-1", status="succeeded", output="y" * 150_000))

    read = small.read_run("run-1")
    assert read.status == "succeeded" and read.output_bytes == 150_000
    assert read.output is not None and read.output.startswith("y" * 60_000)
    assert "[output cut: " in read.output and "of 150,000 bytes shown" in read.output
    assert [h.status for h in small.headlines()] == ["succeeded"]
    with pytest.raises(StoreError, match=r"run\.json.*exceeds the limit of 100000 bytes"):
        small.write_run(run_record("run-1", labels={"pad": "x" * 120_000}, output="z"))
