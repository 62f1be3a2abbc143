"""The `keel` command: `up`, `run`, `demo`, `sessions`, `audit`, `trace`, `drill`,
`keys create`."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2
import msgspec

from deploy.demo import demo_spec
from deploy.examples import EXAMPLES, example_session
from deploy.settings import KeelSettings
from deploy.trace import trace
from deploy.up import ServedModel, Up, api_key_path, port_or_free
from drill import (
    DeploymentTarget,
    DrillOptions,
    EmbeddedTarget,
    Target,
    TargetUnreachable,
    render,
    render_html,
    run_drill,
)
from schemas import SettingsError, settings_from_env
from session_store import open_store
from traces import TraceSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="keel", description="Host long-running AI agents.")
    try:
        settings = settings_from_env(KeelSettings)
    except SettingsError as exc:
        parser.error(str(exc))
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run the embedded all-in-one until Ctrl-C")
    up.add_argument("--data-dir", type=Path, default=settings.data_dir)
    up.add_argument("--port", type=int, default=settings.http_port)
    up.add_argument("--nats-url", default=settings.nats_url)
    up.add_argument("--store-url", default=settings.store_url)
    up.add_argument("--sandbox", choices=["local", "docker"], default=settings.sandbox)
    up.add_argument(
        "--provider",
        choices=["anthropic", "openai"],
        help="serve every model id but keel-scripted from this provider (else: KEEL_MODELS_FILE)",
    )
    up.add_argument("--base-url", help="with --provider: its server, e.g. a local model's")
    up.add_argument("--api-key-env", help="with --provider: the variable holding its key")

    run = commands.add_parser("run", help="start a session and stream it to the terminal")
    run.add_argument("goal", nargs="?", default="Fix add() in app.py and prove it with a test.")
    run.add_argument("--demo", action="store_true", help="the scripted coding demo")
    run.add_argument(
        "--example",
        choices=EXAMPLES,
        help="a shipped example (examples/): its session.json, goal and agents, as written",
    )
    run.add_argument("--provider", default=settings.model_provider)
    run.add_argument("--model", default=settings.model)
    run.add_argument("--base-url", default=settings.model_base_url)
    _client_arguments(run, settings)

    demo = commands.add_parser(
        "demo", help="start keel, run the scripted coding demo, show it live, stop"
    )
    demo.add_argument("--data-dir", type=Path, default=settings.data_dir)

    sessions = commands.add_parser("sessions", help="list sessions")
    _client_arguments(sessions, settings)

    audit = commands.add_parser(
        "audit", help="verify a session's hash chain and show its state at a seq"
    )
    audit.add_argument("session_id")
    audit.add_argument("--seq", type=int, help="fold the log up to this seq (default: head)")
    audit.add_argument("--json", action="store_true", help="print the whole audit as JSON")
    _client_arguments(audit, settings)

    _trace_arguments(
        commands.add_parser(
            "trace",
            help="rebuild a session's OpenTelemetry trace from its log and send it over OTLP "
            "(OTEL_EXPORTER_OTLP_ENDPOINT), or print it as JSON lines",
        ),
        settings,
    )

    _drill_arguments(
        commands.add_parser(
            "drill",
            help="run scripted sessions while killing keel's processes at moments drawn from a "
            "seed, then check every session; exits 1 on any violation",
        ),
        settings,
    )

    _keys_arguments(commands.add_parser("keys", help="API keys"), settings)

    args = parser.parse_args(argv)
    match args.command:
        case "up":
            return Up(
                args.data_dir,
                http_port=args.port,
                nats_url=args.nats_url,
                store_url=args.store_url,
                sandbox=args.sandbox,
                served_model=_served_model(parser, args),
            ).run()
        case "run":
            return asyncio.run(_run(args))
        case "demo":
            return _demo(args.data_dir)
        case "sessions":
            return asyncio.run(_sessions(args))
        case "audit":
            return asyncio.run(_audit(args))
        case "trace":
            return asyncio.run(
                trace(_store_url(args), args.session_id, _trace_settings(parser), json=args.json)
            )
        case "drill":
            return _drill(args)
        case "keys":
            print(asyncio.run(_create_key(_store_url(args), args.tenant, args.name)))
            return 0
    return 2


def _trace_arguments(parser: argparse.ArgumentParser, settings: KeelSettings) -> None:
    parser.add_argument("session_id")
    parser.add_argument("--json", action="store_true", help="print the spans even if exporting")
    parser.add_argument("--store-url", default=settings.store_url)
    parser.add_argument("--data-dir", type=Path, default=settings.data_dir)


def _keys_arguments(keys: argparse.ArgumentParser, settings: KeelSettings) -> None:
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="make a key for a tenant and print it")
    create.add_argument("--tenant", default="default")
    create.add_argument("--name", default="")
    create.add_argument("--store-url", default=settings.store_url)
    create.add_argument("--data-dir", type=Path, default=settings.data_dir)


def _drill_arguments(parser: argparse.ArgumentParser, settings: KeelSettings) -> None:
    parser.add_argument("--faults", type=int, default=50, help="how many faults to inject")
    parser.add_argument(
        "--seed", type=int, help="draws the faults and their moments (default: new)"
    )
    parser.add_argument("--sessions", type=int, default=3, help="sessions running at once")
    parser.add_argument("--settle-s", type=float, default=180.0, help="time to settle after")
    parser.add_argument("--report", type=Path, help="write the report here as JSON")
    parser.add_argument(
        "--html", type=Path, help="write the report here as a self-contained HTML page"
    )
    parser.add_argument(
        "--deployment",
        type=Path,
        help="a TOML file describing separate processes (default: the keel up in --data-dir)",
    )
    parser.add_argument("--data-dir", type=Path, default=settings.data_dir)


def _drill(args: argparse.Namespace) -> int:
    """Exit 0 only with no violation, 1 with any, 2 when nothing could be run."""
    target: Target
    try:
        if args.deployment is not None:
            target, name = DeploymentTarget.from_file(args.deployment), str(args.deployment)
        else:
            target, name = EmbeddedTarget(args.data_dir), f"keel up in {args.data_dir}"
    except TargetUnreachable as exc:
        print(f"keel drill: {exc}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    options = DrillOptions(
        seed=seed, faults=args.faults, sessions=args.sessions, settle_s=args.settle_s
    )
    print(f"keel drill: seed {seed}, {args.faults} faults against {name}", flush=True)
    report = asyncio.run(run_drill(target, options, name))
    print(render(report))
    if args.report is not None:
        args.report.write_bytes(msgspec.json.format(msgspec.json.encode(report)) + b"\n")
    if args.html is not None:
        args.html.write_text(render_html(report), encoding="utf-8")
    return 0 if report.ok else 1


def _store_url(args: argparse.Namespace) -> str:
    """`--store-url`, else the store `keel up` keeps in the data directory."""
    return str(args.store_url or f"sqlite:///{args.data_dir.resolve() / 'keel.db'}")


def _trace_settings(parser: argparse.ArgumentParser) -> TraceSettings:
    try:
        return settings_from_env(TraceSettings)
    except SettingsError as exc:
        parser.error(str(exc))


def _served_model(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ServedModel | None:
    if args.provider is None:
        if args.base_url or args.api_key_env:
            parser.error("--base-url and --api-key-env go with --provider")
        return None
    return ServedModel(args.provider, args.base_url, args.api_key_env)


def _client_arguments(parser: argparse.ArgumentParser, settings: KeelSettings) -> None:
    parser.add_argument("--url", default=settings.url)
    parser.add_argument("--key", default=settings.api_key)
    parser.add_argument("--data-dir", type=Path, default=settings.data_dir)


def _key(args: argparse.Namespace) -> str:
    if args.key:
        return str(args.key)
    path = api_key_path(args.data_dir)
    if path.exists():
        return path.read_text().strip()
    raise SystemExit("no API key: pass --key, set KEEL_API_KEY, or run `keel up` first")


async def _create_key(store_url: str, tenant: str, name: str) -> str:
    store = open_store(store_url)
    try:
        await store.migrate()
        return (await store.create_api_key(tenant, name)).key
    finally:
        await store.close()


def _spec(args: argparse.Namespace) -> dict[str, Any]:
    if args.demo or args.provider == "scripted":
        return demo_spec()
    model: dict[str, Any] = {"provider": args.provider, "name": args.model}
    if args.base_url:
        model["base_url"] = args.base_url
    # The demo's tools and instructions, but the goal is the user's: the model decides when
    # it is done (the demo's check only fits the demo's task).
    spec = demo_spec()
    spec["model"] = model
    del spec["completion"]
    return spec


async def _run(args: argparse.Namespace) -> int:
    headers = {"authorization": f"Bearer {_key(args)}"}
    async with httpx2.AsyncClient(base_url=args.url, headers=headers, timeout=None) as client:
        body = (
            example_session(args.example)
            if args.example
            else {"spec": _spec(args), "message": args.goal}
        )
        created = await client.post("/v1/sessions", json=body)
        if created.status_code != 201:
            print(f"keel: {created.status_code} {created.text}", file=sys.stderr)
            return 1
        session_id = created.json()["id"]
        print(f"session {session_id} (in a browser: {args.url}/view/{session_id})\n")
        status = "unknown"
        async with client.stream("GET", f"/v1/sessions/{session_id}/stream") as stream:
            data = ""
            async for line in stream.aiter_lines():
                if line.startswith("data: "):
                    data = line.removeprefix("data: ")
                elif line == "" and data:
                    status = _show(json.loads(data)) or status
                    data = ""
        return 0 if status == "completed" else 1


def _show(event: dict[str, Any]) -> str | None:
    """Print one event readably; return the status it sets, if any."""
    kind, data = event["type"], event["data"]
    match kind:
        case "user.message":
            print(f"> {data['text']}")
        case "model.response":
            for block in data["content"]:
                if block["kind"] == "text" and block["text"]:
                    print(f"agent: {block['text']}")
        case "tool.requested":
            arguments = json.dumps(data["input"])
            print(f"  -> {data['name']} {arguments[:200]}")
        case "tool.result":
            mark = "error" if data["is_error"] else "ok"
            output = data["output"].strip().replace("\n", "\n     ")
            print(f"  <- [{mark}] {output[:1500]}")
        case "judge.verdict":
            verdict = "passed" if data["passed"] else "failed"
            print(f"  check {verdict}: {data['detail'].strip().splitlines()[0][:300]}")
        case "session.status":
            first_line = (data.get("reason") or "").strip().split("\n")[0]
            reason = f" ({first_line})" if first_line else ""
            print(f"[{data['status']}{reason}]")
            return str(data["status"])
    return None


def _demo(data_dir: Path) -> int:
    port = port_or_free(8080)
    url = f"http://127.0.0.1:{port}"
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deploy.cli",
            "up",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert up.stdout is not None
        for line in up.stdout:
            print(line, end="", flush=True)
            if line.startswith("  Ctrl-C"):
                break
        else:
            return up.wait() or 1
        goal = "Fix add() in app.py and prove it with a test."
        run = argparse.Namespace(
            goal=goal,
            demo=True,
            example=None,
            url=url,
            key=None,
            data_dir=data_dir,
            provider="scripted",
        )
        print()
        code = asyncio.run(_run(run))
        print(DEMO_NEXT.format(url=url, key_file=api_key_path(data_dir)))
        return code
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=60)


DEMO_NEXT = """
That was the scripted model. To run the same task with a real one, give the brain its key
when you start keel, and keep it up:

    ANTHROPIC_API_KEY=... .venv/bin/keel up &
    .venv/bin/keel run --provider anthropic --model claude-sonnet-4-6 \\
        "Fix add() in app.py and prove it with a test."

or, with OpenAI or any OpenAI-compatible server (vLLM, Ollama, llama.cpp need no key):

    OPENAI_API_KEY=... .venv/bin/keel up &
    .venv/bin/keel run --provider openai --model gpt-4.1-mini "Write fizzbuzz with a test."
    .venv/bin/keel run --provider openai --model qwen3 --base-url http://127.0.0.1:11434/v1 \\
        "Write fizzbuzz with a test."

(keel's own API key is in {key_file}; the web viewer is at {url}/ and the API's docs
at {url}/docs)"""


async def _sessions(args: argparse.Namespace) -> int:
    headers = {"authorization": f"Bearer {_key(args)}"}
    async with httpx2.AsyncClient(base_url=args.url, headers=headers) as client:
        page = (await client.get("/v1/sessions", params={"limit": 50})).json()
    for session in page["items"]:
        usage = session["usage"]
        tokens = usage.get("input_tokens", 0) + usage.get("output_tokens", 0)
        print(
            f"{session['id']}  {session['status']:<10} seq {session['head_seq']:<5}"
            f" turns {session['turns']:<3} tokens {tokens:<7} ${session['cost_usd']:.4f}"
            f"  {session['title']}".rstrip()
        )
    return 0


async def _audit(args: argparse.Namespace) -> int:
    """Exit 0 only when the chain verifies: usable as a check in a script."""
    headers = {"authorization": f"Bearer {_key(args)}"}
    params = {"seq": args.seq} if args.seq is not None else {}
    async with httpx2.AsyncClient(base_url=args.url, headers=headers) as client:
        answer = await client.get(f"/v1/sessions/{args.session_id}/audit", params=params)
    if answer.status_code != 200:
        print(f"keel: {answer.status_code} {answer.json()['error']['message']}", file=sys.stderr)
        return 2
    audit = answer.json()
    if args.json:
        print(json.dumps(audit, indent=2))
    chain = audit["chain"]
    if chain["ok"]:
        print(f"chain ok: {chain['checked']} events verified, head {chain['head_seq']}")
    else:
        print(f"chain BROKEN at seq {chain['bad_seq']}: {chain['problem']}")
    state = audit["state"]
    if state is None:
        print(f"state at seq {audit['at_seq']}: unavailable ({audit['state_error']})")
    elif not args.json:
        print(
            f"state at seq {audit['at_seq']}: {state['status']}, {state['turns']} turns,"
            f" {state['calls_finished']} tool calls finished,"
            f" {len(state['open_calls'])} open, ${state['cost_usd']:.4f}"
        )
    if audit["snapshot_seq"] is not None:
        verdict = "matches" if audit["snapshot_matches"] else "DOES NOT match"
        print(f"snapshot at seq {audit['snapshot_seq']} + tail {verdict} the full replay")
    return 0 if chain["ok"] and audit["snapshot_matches"] is not False else 1


if __name__ == "__main__":
    sys.exit(main())
