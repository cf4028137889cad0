"""The serving benchmark's report: ratios and targets from the measured configurations, the
markdown table, the latency-vs-throughput plot, the JSON, and the summary printed at the end."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .workload import LONG_TOKENS

REPORT_JSON, REPORT_MD, REPORT_PNG = "serving_benchmark.json", "serving_benchmark.md", "serving_benchmark.png"


def _find(configs, name):
    return next((c for c in configs if c["name"] == name), None)


def _precision(config: dict) -> str:
    return config.get("precision", "fp32")


def ratios(configs: list[dict], fidelity: dict | None = None) -> dict:
    """Speed-ups against the baseline, overheads, throughput ratios and the targets. ``fidelity``
    (``fidelity_vs_fp32_oracle`` of the report) says which reduced-precision paths passed their
    gate: only those count for the reduced-precision targets."""
    base1, base16 = _find(configs, "baseline b1"), _find(configs, "baseline b16")
    out: dict = {}
    reduced_b1 = [c["name"] for c in configs if c["mode"] == "sequential" and c["path"].startswith("triton")
                  and _precision(c) != "fp32"]
    for name in ("onnxruntime b1", "triton ids b1", "triton text b1", *reduced_b1):
        c = _find(configs, name)
        if c and base1:
            out[f"batch1_mean_latency_speedup[{name}]"] = base1["latency"]["mean_ms"] / c["latency"]["mean_ms"]
            out[f"batch1_p50_latency_speedup[{name}]"] = base1["latency"]["p50_ms"] / c["latency"]["p50_ms"]
            for part in ("short", "long"):
                b, o = base1.get("latency_by_length", {}).get(part, {}), c.get("latency_by_length", {}).get(part, {})
                if b.get("n") and o.get("n"):
                    out[f"batch1_mean_latency_speedup_{part}_prompts[{name}]"] = b["mean_ms"] / o["mean_ms"]
    ort, ids1 = _find(configs, "onnxruntime b1"), _find(configs, "triton ids b1")
    if ort and ids1:
        out["server_overhead_ms[triton ids b1 - onnxruntime b1, mean]"] = ids1["latency"]["mean_ms"] - ort["latency"]["mean_ms"]
        out["server_overhead_ms[triton ids b1 - onnxruntime b1, p50]"] = ids1["latency"]["p50_ms"] - ort["latency"]["p50_ms"]
    if ort and ids1 and len(ort["samples_ms"]) == len(ids1["samples_ms"]):
        out["server_overhead_ms[paired median over prompts, triton ids b1 - onnxruntime b1]"] = float(
            np.median(np.subtract(ids1["samples_ms"], ort["samples_ms"])))
    for name, ensemble in (("triton ids b1", "classify_ids"), ("triton text b1", "classify_text")):
        c = _find(configs, name)
        stats = (c or {}).get("triton", {})
        if ensemble in stats and "encoder" in stats and \
                stats[ensemble]["success_count"] == stats["encoder"]["success_count"]:  # same requests in both
            server = stats[ensemble]["server_ms_per_request"]
            out[f"triton_pipeline_ms[{name}: ensemble - encoder compute, per request]"] = (
                server - stats["encoder"]["compute_ms_per_request"])
            out[f"grpc_and_client_ms[{name}: client latency - ensemble, per request]"] = c["latency"]["mean_ms"] - server
    conc = [c for c in configs if c["mode"] == "concurrent" and c["latency"].get("n")]

    def best_rate(path: str, precision: str) -> float | None:
        mine = [c["throughput"]["prompts_per_s"] for c in conc if c["path"] == path and _precision(c) == precision]
        return max(mine) if mine else None

    fp32_ids = best_rate("triton-ids", "fp32")
    gates = {name: fid.get("gate_passed") for name, fid in (fidelity or {}).items() if name.startswith("triton")}
    reduced_rates = {}
    for name in reduced_b1:
        precision = _precision(_find(configs, name))
        rate = best_rate("triton-ids", precision)
        if rate and fp32_ids:
            reduced_rates[name] = rate / fp32_ids
            out[f"throughput_ratio[best ids {precision} concurrent / best ids fp32 concurrent]"] = reduced_rates[name]
    conc = [c for c in conc if _precision(c) == "fp32"]  # the fp32 ratios below, as before
    if conc and base16:
        best = max(conc, key=lambda c: c["throughput"]["prompts_per_s"])
        out["best_concurrent_config"] = best["name"]
        out["throughput_ratio[best concurrent / baseline b16]"] = (best["throughput"]["prompts_per_s"]
                                                                   / base16["throughput"]["prompts_per_s"])
        if base1:
            out["throughput_ratio[best concurrent / baseline b1]"] = (best["throughput"]["prompts_per_s"]
                                                                     / base1["throughput"]["prompts_per_s"])
        for path in ("ids", "text"):
            one = _find(configs, f"triton {path} c1")
            mine = [c for c in conc if c["path"] == f"triton-{path}"]
            if one and mine:
                top = max(mine, key=lambda c: c["throughput"]["prompts_per_s"])
                out[f"dynamic_batching_gain[{path}: best / 1 client]"] = (top["throughput"]["prompts_per_s"]
                                                                           / one["throughput"]["prompts_per_s"])
    lat = out.get("batch1_mean_latency_speedup[triton ids b1]")
    thr = out.get("throughput_ratio[best concurrent / baseline b16]")
    out["targets"] = {"grpc_batch1_latency_at_least_2x": None if lat is None else lat >= 2.0,
                      "concurrent_throughput_at_least_2x_baseline_b16": None if thr is None else thr >= 2.0,
                      "fp32_grpc_batch1_latency_at_least_3.5x": None if lat is None else lat >= 3.5}
    if reduced_b1:
        passed = [n for n in reduced_b1 if gates.get(n)]
        speed = [out.get(f"batch1_mean_latency_speedup[{n}]", 0.0) for n in passed]
        out["targets"]["reduced_precision_within_the_reference_band"] = all(gates.get(n) for n in reduced_b1)
        out["targets"]["reduced_precision_batch1_latency_at_least_6x"] = bool(speed) and max(speed) >= 6.0
        out["targets"]["reduced_precision_throughput_at_least_2x_fp32"] = any(
            reduced_rates.get(n, 0.0) >= 2.0 for n in passed)
    return out


TARGET_TEXT = {
    "grpc_batch1_latency_at_least_2x": "gRPC batch-1 mean latency >= 2x faster than the baseline (fp32)",
    "concurrent_throughput_at_least_2x_baseline_b16": "concurrent throughput >= 2x the baseline at batch 16",
    "fp32_grpc_batch1_latency_at_least_3.5x": "fp32 gRPC batch-1 mean latency >= 3.5x faster than the baseline",
    "reduced_precision_within_the_reference_band": "every reduced-precision path no further from the fp32 oracle "
                                                   "than the reference as shipped, no flip >= 0.05 from its threshold",
    "reduced_precision_batch1_latency_at_least_6x": "a reduced-precision path within the band: batch-1 mean latency "
                                                    ">= 6x faster than the baseline",
    "reduced_precision_throughput_at_least_2x_fp32": "a reduced-precision path within the band: best concurrent "
                                                     "throughput >= 2x fp32's (ids)",
}


def _fmt_ms(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def markdown(report: dict) -> str:
    w, m, r = report["workload"], report["machine"], report["ratios"]
    base1 = _find(report["configs"], "baseline b1")
    lines = [
        "# Serving benchmark: Triton gRPC path vs the reference path",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB; {m['platform']}. "
        f"All paths ran one after the other on the same cores, warm-up excluded.",
        f"Workload: {w['prompts']} prompts, {w['tokens_mean']:.1f} tokens on average (p50 {w['tokens_p50']:.0f}, "
        f"p95 {w['tokens_p95']:.0f}, max {w['tokens_max']}), {w['long_share']:.0%} with >= {w['long_threshold_tokens']} "
        f"tokens; {w['generator']}. Baseline batch 16: the first {w['batch16_prompts']} prompts. "
        f"Cost at ${report['usd_per_hour']}/h.",
        "",
        "| config | requests | mean ms (95% CI) | p50 ms | p95 ms | p99 ms | prompts/s | tokens/s | $ / 1M tokens | vs baseline b1 latency |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in report["configs"]:
        lat, thr = c["latency"], c["throughput"]
        if not lat.get("n"):
            lines.append(f"| {c['name']} | 0 | failed | | | | | | | |")
            continue
        ci = lat["ci95_half_ms"] if lat["n"] >= 3 else None
        speed = base1["latency"]["mean_ms"] / lat["mean_ms"] if base1 and c["mode"] == "sequential" else None
        req = str(c.get("requests", lat["n"]))
        if c.get("errors"):
            req += f" ({c['errors']} failed)"
        lines.append(
            f"| {c['name']} | {req} | {_fmt_ms(lat['mean_ms'])}"
            f"{'' if ci is None else ' ± ' + _fmt_ms(ci)} | {_fmt_ms(lat['p50_ms'])} | "
            f"{_fmt_ms(lat['p95_ms'])} | {_fmt_ms(lat['p99_ms'])} | {thr['prompts_per_s']:.2f} | "
            f"{thr['tokens_per_s']:.1f} | {thr['usd_per_1m_tokens']:.2f} | {'' if speed is None else f'{speed:.2f}x'} |")
    b16 = _find(report["configs"], "baseline b16")
    lines += ["", "Rows: `baseline` = ReferenceClassifier (HF eager, unmerged PEFT, fp32, right padding); "
              "`b16` latency is per batch of 16 (every prompt of a batch waits for all of it)"
              + (f", {b16['padding_waste']:.0%} of its padded cells were padding" if b16 else "")
              + "; `onnxruntime` = the bundle's graph in-process; `triton ids` = client tokenization -> "
              "`classify_ids`, `triton text` = `classify_text`; `cN` = N concurrent clients, one prompt per request.",
              "", f"Batch-1 latency by prompt length (short: < {LONG_TOKENS} tokens, long: >= {LONG_TOKENS}):", "",
              "| config | short: n | short: mean ms | short: p50 ms | long: n | long: mean ms | long: p50 ms |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for c in report["configs"]:
        split = c.get("latency_by_length")
        if split:
            sh, lo = split["short"], split["long"]
            lines.append(f"| {c['name']} | {sh['n']} | {_fmt_ms(sh.get('mean_ms'))} | {_fmt_ms(sh.get('p50_ms'))} | "
                         f"{lo['n']} | {_fmt_ms(lo.get('mean_ms'))} | {_fmt_ms(lo.get('p50_ms'))} |")
    lines += ["", "## Ratios", ""]
    for k, v in r.items():
        if k == "targets":
            continue
        lines.append(f"- {k}: {v:.2f}" + ("x" if "speedup" in k or "ratio" in k or "gain" in k else "")
                     if isinstance(v, float) else f"- {k}: {v}")
    lines += [f"- target {TARGET_TEXT.get(k, k)}: {'n/a' if v is None else 'met' if v else 'MISSED'}"
              for k, v in r["targets"].items()]
    lines.append("")
    fid = report.get("fidelity_vs_fp32_oracle")
    if fid:
        lines += ["## Reduced precision: fidelity against the fp32 oracle (baseline b1), same prompts", "",
                  "The reference as shipped (bf16) sets the band; a path passes when it is no further from fp32 "
                  "and flips no decision whose fp32 score is >= 0.05 from its threshold.", "",
                  "| path | max \\|score diff\\| | mean | flips (of decisions), fp32 distance to threshold | gate |",
                  "|---|---:|---:|---|---|"]
        for name, f in fid.items():
            flips = f"{f['decision_flips']} (of {f['decisions']})"
            if f["flips"]:
                flips += ": " + ", ".join(f"{x['oracle_distance_to_threshold']:.4f}" for x in f["flips"][:8])
            gate = "(the band)" if "gate_passed" not in f else "passed" if f["gate_passed"] else \
                "FAILED: " + "; ".join(f["gate_failures"])
            gate = gate.replace("|", "\\|")  # the gate's reasons quote "max |score diff|"
            lines.append(f"| {name} | {f['max_abs_score_diff']:.2e} | {f['mean_abs_score_diff']:.2e} | {flips} | {gate} |")
        lines.append("")
    mem = report["memory_peak_rss_mib"]
    lines += ["## Peak memory (RSS)", "",
              f"- baseline process: {mem['baseline_process']:,.0f} MiB",
              f"- ONNX Runtime process: {mem['onnxruntime_process']:,.0f} MiB",
              f"- Triton server process tree: {mem['server_tree']:,.0f} MiB peak "
              f"({mem['server_tree_after_load']:,.0f} MiB after load); by process: "
              + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(mem["server_by_process"].items())), ""]
    lines += ["## Dynamic batching (Triton inference statistics, encoder)", "",
              "Per request: queue = wait in the encoder's queue; run = duration of the execute() that carried "
              "it; ensemble = server time from request to response.", "",
              "| config | encoder rows | encoder runs | rows / run | requests per run: runs | ms / run | "
              "queue ms / request | run ms / request | ensemble ms / request |",
              "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for c in report["configs"]:
        enc = c.get("triton", {}).get("encoder")
        if not enc:
            continue
        ens = c["triton"].get("classify_ids" if c["path"] == "triton-ids" else "classify_text", {})
        sizes = " ".join(f"{k}:{v['executions']}" for k, v in enc.get("batches", {}).items()) or "n/a"
        lines.append(f"| {c['name']} | {enc['inference_count']} | {enc['execution_count']} | "
                     f"{enc['rows_per_execution']:.2f} | {sizes} | {_fmt_ms(enc.get('ms_per_execution'))} | "
                     f"{_fmt_ms(enc['queue_ms_per_request'])} | {_fmt_ms(enc['compute_ms_per_request'])} | "
                     f"{_fmt_ms(ens.get('server_ms_per_request'))} |")
    p = report["parity_max_abs_score_diff_vs_baseline_b1"]
    cpu = report["cpu_accounting"]
    lines += ["", "## Checks", "",
              "- max |score diff| vs baseline batch 1: " + ", ".join(f"{k} {v:.2e}" for k, v in p.items()),
              f"- load average at start {tuple(round(x, 2) for x in report['loadavg_at_start'])}, at end "
              f"{tuple(round(x, 2) for x in report['loadavg_at_end'])}; other processes used "
              f"{cpu['others_cpu_s']:.0f} CPU-s ({cpu['others_share_of_capacity']:.1%} of capacity) during the "
              f"{cpu['wall_s']:.0f} s run (" + ", ".join(
                  f"{k} {v['others_share_of_capacity']:.1%} of {v['wall_s']:.0f} s" for k, v in cpu["phases"].items())
              + ")",
              f"- load times: baseline {report['load']['baseline_load_s']:.1f} s, ONNX Runtime session "
              f"{report['load']['onnxruntime_session_s']:.1f} s, Triton ready {report['load']['server_ready_s']:.1f} s",
              ]
    lines += [f"- note: {n}" for n in report["notes"]]
    lines += ["", f"Command: `{report['command']}`", "", f"Plot: `{REPORT_PNG}`", ""]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    """Left: latency percentiles vs throughput for every configuration (concurrency levels as
    curves). Right: batch-1 mean latency of short and long prompts, path by path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.6), dpi=80, gridspec_kw={"width_ratios": [2.1, 1]})
    colors = {"reference": "tab:red", "onnxruntime": "tab:gray", "triton-ids": "tab:blue", "triton-text": "tab:green"}
    curve_colors = {"bf16": "tab:purple", "int8": "tab:orange"}
    curves = [("triton-ids", "fp32"), ("triton-text", "fp32")] + [
        ("triton-ids", p) for p in sorted({_precision(c) for c in report["configs"]} - {"fp32"})]
    for j, (path_name, precision) in enumerate(curves):
        conc = [c for c in report["configs"] if c["path"] == path_name and c["mode"] == "concurrent"
                and _precision(c) == precision and c["latency"].get("n")]
        if not conc:
            continue
        color = colors[path_name] if precision == "fp32" else curve_colors.get(precision, "tab:brown")
        x = [c["throughput"]["prompts_per_s"] for c in conc]
        for key, style, label in (("p50_ms", "-o", "p50"), ("p95_ms", "--^", "p95")):
            ax.plot(x, [c["latency"][key] for c in conc], style, color=color, ms=4, lw=1.2,
                    label=f"{path_name.replace('-', ' ')}{'' if precision == 'fp32' else ' ' + precision}, "
                          f"N clients: {label}")
        for c, xi in zip(conc, x):
            ax.annotate(f"N={c['clients']}", (xi, c["latency"]["p50_ms"]), textcoords="offset points",
                        xytext=(-34 if j == 0 else 6, -3), fontsize=7, color=color)
    markers = {"baseline b1": "s", "baseline b16": "D", "onnxruntime b1": "P", "triton ids b1": "X",
               "triton text b1": "*"}
    for c in (c for c in report["configs"] if c["mode"] != "concurrent" and c["latency"].get("n")):
        x = c["throughput"]["prompts_per_s"]
        color = colors[c["path"]] if _precision(c) == "fp32" else curve_colors.get(_precision(c), "tab:brown")
        ax.plot([x, x], [c["latency"]["p50_ms"], c["latency"]["p95_ms"]], "-", color=color, lw=1, alpha=.6)
        ax.plot([x], [c["latency"]["p50_ms"]], markers.get(c["name"], "o"), color=color, ms=7,
                mfc="none" if c["path"] == "reference" else color, label=f"{c['name']}: p50, bar to p95")
    ax.set_xlim(left=0)
    ax.set_yscale("log")
    ax.set_xlabel("throughput (prompts/s)")
    ax.set_ylabel("latency per request (ms, log)")
    w, m = report["workload"], report["machine"]
    ax.set_title(f"Latency vs throughput: {w['prompts']} BELLS-O-like prompts, {w['tokens_mean']:.0f} tokens avg, "
                 f"{w['long_share']:.0%} >= {w['long_threshold_tokens']}; {m['nproc']} CPUs", fontsize=9)
    ax.grid(True, which="both", alpha=.25)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.47, 1.0), ncol=2)

    names = [n for n in ("baseline b1", "onnxruntime b1", "triton ids b1", "triton text b1", "triton ids bf16 b1",
                         "triton ids int8 b1") if _find(report["configs"], n)]

    def bar_color(name):
        c = _find(report["configs"], name)
        return colors[c["path"]] if _precision(c) == "fp32" else curve_colors.get(_precision(c), "tab:brown")

    for k, part in enumerate(("short", "long")):
        vals = [(_find(report["configs"], n).get("latency_by_length", {}).get(part, {}).get("mean_ms") or 0.0)
                for n in names]
        xs = np.arange(len(names)) + (k - 0.5) * 0.38
        bars = bx.bar(xs, vals, 0.36, color=[bar_color(n) for n in names],
                      alpha=0.55 if part == "short" else 0.95, label=f"{part} prompts", edgecolor="black", lw=0.4)
        for b, v in zip(bars, vals):
            if v:
                bx.annotate(f"{v:,.0f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=7)
    bx.set_xticks(np.arange(len(names)), [n.replace(" b1", "").replace("triton ", "") for n in names], fontsize=7,
                  rotation=20)
    bx.set_ylabel("batch-1 mean latency (ms)")
    bx.set_title(f"Batch 1: short (light) vs long (dark, >= {w['long_threshold_tokens']} tokens)", fontsize=9)
    bx.grid(True, axis="y", alpha=.25)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_reports(report: dict, out: Path) -> None:
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
    (out / REPORT_MD).write_text(markdown(report))
    plot(report, out / REPORT_PNG)


def summary_text(report: dict) -> str:
    r = report["ratios"]
    lines = ["", "== serving benchmark =="]
    for c in report["configs"]:
        lat, thr = c["latency"], c["throughput"]
        if lat.get("n"):
            lines.append(f"{c['name']:<18} mean {lat['mean_ms']:9.1f} ms  p50 {lat['p50_ms']:9.1f}  "
                         f"p95 {lat['p95_ms']:9.1f}  {thr['prompts_per_s']:7.2f} prompts/s  "
                         f"{thr['tokens_per_s']:8.1f} tok/s")
    for k, v in r.items():
        if k != "targets":
            lines.append(f"{k}: {v:.2f}" if isinstance(v, float) else f"{k}: {v}")
    lines.append(f"targets: {r['targets']}")
    mem = report["memory_peak_rss_mib"]
    lines.append(f"peak RSS MiB: baseline {mem['baseline_process']:.0f}, onnxruntime {mem['onnxruntime_process']:.0f}, "
                 f"server tree {mem['server_tree']:.0f}")
    lines.append(f"wrote {REPORT_JSON}, {REPORT_MD}, {REPORT_PNG}; {report['duration_s']:.0f} s")
    return "\n".join(lines)
