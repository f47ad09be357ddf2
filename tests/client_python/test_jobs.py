"""submit / wait / cancel / jobs."""
import io
import time

import numpy as np
import pytest

import basin
from helpers import assert_same, strip


def small():
    m = basin.Sequential(2, [{"type": "dense", "out": 4}, {"type": "tanh"},
                             {"type": "dense", "out": 1}])
    m.params = np.linspace(-1, 1, m.num_params)
    X = np.random.default_rng(0).normal(size=(6, 2))
    return m, X, np.zeros((6, 1))


def slow():
    """N = 1963 with the full Hessian: several seconds on 2 cores."""
    m = basin.Sequential(4, [{"type": "dense", "out": 40}, {"type": "tanh"},
                             {"type": "dense", "out": 40}, {"type": "tanh"},
                             {"type": "dense", "out": 3}])
    m.params = np.random.default_rng(0).normal(size=m.num_params) * 0.3
    X = np.random.default_rng(1).normal(size=(300, 4))
    return m, X, np.zeros((300, 3))


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_submit_wait_equals_analyze(client, monkeypatch):
    m, X, Y = small()
    job = client.submit(m, X, Y)
    assert isinstance(job, basin.Job) and job.id
    assert job.state in ("queued", "running", "succeeded")
    tty = FakeTTY()
    monkeypatch.setattr("sys.stderr", tty)
    r = job.wait(progress=True)
    monkeypatch.undo()
    assert job.status == "succeeded" and job.done
    assert "100.0%" in tty.getvalue() and "[" in tty.getvalue()
    assert_same(strip(r.to_dict()), strip(client.analyze(m, X, Y).to_dict()))
    assert_same(strip(job.result().to_dict()), strip(r.to_dict()))
    # a handle from the id alone
    again = client.job(job.id)
    assert again.state == "succeeded"
    assert_same(strip(again.result().to_dict()), strip(r.to_dict()))


def test_plain_progress_lines_off_a_terminal(client, monkeypatch):
    """Not a terminal (a log file, CI): no bar redrawn with carriage returns, but one plain line per
    change of state/stage (and per tenth), never repeating the line before, ending with the final state."""
    m, X, Y = slow()
    buf = io.StringIO()
    monkeypatch.setattr("sys.stderr", buf)
    job = client.submit(m, X, Y, loss="mse", want=("jacobian", "ggn", "hessian"))
    job.wait(progress=True)
    monkeypatch.undo()
    text = buf.getvalue()
    assert "\r" not in text and "[#" not in text
    lines = text.splitlines()
    assert lines and all(line.startswith(f"basin: job {job.id} ") for line in lines), text
    assert lines[-1].startswith(f"basin: job {job.id} succeeded") and lines[-1].endswith(" 100%"), text
    assert all(a != b for a, b in zip(lines, lines[1:])), text  # a line only when something changed
    assert len(lines) >= 2, text  # at least one stage seen while it ran, then the end
    # progress=False stays silent
    buf = io.StringIO()
    monkeypatch.setattr("sys.stderr", buf)
    client.submit(*small()).wait(progress=False)
    monkeypatch.undo()
    assert buf.getvalue() == ""


def test_submit_batch(client):
    m, X, Y = small()
    P = np.stack([m.params, 2 * m.params])
    rs = client.submit(m.with_params(P), X, Y).wait(progress=False)
    assert isinstance(rs, list) and len(rs) == 2
    assert_same(strip(rs[1].to_dict()),
                strip(client.analyze(m.with_params(P[1]), X, Y).to_dict()))


def test_invalid_job_rejected_at_submit(client):
    m, X, Y = small()
    with pytest.raises(basin.InvalidArgument, match="label"):
        client.submit(m, X, np.array([0, 1, 5, 0, 0, 0]), loss="cross_entropy")


def test_cancel(server):
    m, X, Y = slow()
    with basin.Client(server.address) as c:
        running = c.submit(m, X, Y, want=("jacobian", "ggn", "hessian"))
        queued = c.submit(m, X, Y, want=("jacobian", "ggn", "hessian"))
        # one worker: the second waits behind the first
        deadline = time.monotonic() + 30
        while running.status == "queued" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert queued.status == "queued"
        queued.cancel()
        assert queued.status == "cancelled"
        with pytest.raises(basin.Cancelled):
            queued.wait(progress=False)
        with pytest.raises(basin.Cancelled):
            queued.result()
        running.cancel()
        try:
            running.wait(progress=False, timeout=120)
            final = "succeeded"  # finished before the cancellation reached it
        except basin.Cancelled:
            final = "cancelled"
        assert running.status == final
        ids = {j.id: j.state for j in c.jobs()}
        assert ids[queued.id] == "cancelled" and ids[running.id] == final
        assert queued.id in {j.id for j in c.jobs(states=("cancelled",))}
        assert all(j.state == "succeeded" for j in c.jobs(states=["succeeded"]))


def test_wait_timeout(server):
    m, X, Y = slow()
    with basin.Client(server.address) as c:
        job = c.submit(m, X, Y, want=("jacobian", "ggn", "hessian"))
        with pytest.raises(basin.DeadlineExceeded):
            job.wait(progress=False, timeout=0.2)
        job.cancel()


def test_info_and_health(client):
    info = client.info()
    assert info["backend"] in ("cpu", "cuda")
    assert info["limits"]["max_chunk_bytes"] >= 1 << 20
    assert info["user"] == "anonymous"
    assert client.health() == "SERVING"


def test_finished_jobs_beyond_the_memory_cap_read_the_same(make_server):
    """basind --keep-finished-in-memory 1: older finished jobs are served from its database;
    handles, results and listings are the same as while they were in memory."""
    s = make_server("--keep-finished-in-memory", "1")
    with basin.Client(s.address) as c:
        m, X, Y = small()
        jobs, results, infos = [], [], []
        for i in range(4):
            job = c.submit(m.with_params(m.params * (1 + 0.1 * i)), X, Y)
            results.append(job.result(timeout=60))
            jobs.append(job)
            infos.append(c.job(job.id).info())  # just finished: the one kept in memory
        listed = c.jobs()
        assert [j.id for j in listed] == [j.id for j in reversed(jobs)]
        for job, r, info in zip(jobs, results, infos):
            again = c.job(job.id)  # all but the last come from the database now
            assert again.state == "succeeded" and again.info() == info
            assert_same(strip(again.result().to_dict()), strip(r.to_dict()))
        assert [j.info() for j in listed] == list(reversed(infos))
