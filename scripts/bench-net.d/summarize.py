#!/usr/bin/env python3
"""Tables of medians and ratios from the raw outputs scripts/bench-net keeps.

usage: summarize.py OUT_DIR RUNS "COLUMNS" [JSON_FILE]
OUT_DIR holds COLUMN.STEP[.RUN].{out,err,rc} and COLUMN.failed (the reason a
column was given up); the DNS columns' files are named dns-COLUMN. Prints markdown tables, then the results as JSON (also
written to JSON_FILE when given).
"""
import json
import os
import re
import statistics
import sys

PROXIES = ['direct', 'squid', 'tinyproxy', 'sandboxd']
DNS = ['sandboxd', 'dnsmasq']
# The measurements scripts/bench-net made (BENCH_NET_STEPS); the others are not reported.
STEPS = os.environ.get('BENCH_NET_STEPS', 'latency thru conc dns').split()


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def step(out, column, name):
    """(parsed stdout or None, error text or None) of one step."""
    base = os.path.join(out, f'{column}.{name}')
    rc, stdout, stderr = read(base + '.rc'), read(base + '.out'), read(base + '.err') or ''
    if rc is None:
        return None, None
    lines = stderr.strip().splitlines()
    # bench.py names the failure on a line of its own before any traceback.
    told = [line for line in lines if line.startswith('error:')]
    last_err = ' '.join(told[:1] or lines[-2:])[:300]
    if rc.strip() != '0':
        return None, f'exit {rc.strip()}: {last_err}'
    return stdout, None


def bench_json(stdout):
    for line in reversed((stdout or '').strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def median(xs):
    return round(statistics.median(xs), 3) if xs else None


def proxy_column(out, column, runs):
    res = {'errors': []}
    failed = read(os.path.join(out, f'{column}.failed'))
    if failed:
        res['failed'] = failed.strip()
        return res
    if column != 'direct':
        # bench.py reports the refused CONNECT on stderr (and then has no figures to give).
        refusal = re.search(r"CONNECT refused: b?'?([^'\n]*)", read(os.path.join(out, f'{column}.allowlist.err')) or '')
        res['refuses_unlisted_name'] = bool(refusal)
        if refusal:
            res['refusal'] = refusal.group(1)
    p50, p99, gib, served, setup = [], [], [], [], []
    for run in range(1, runs + 1):
        if 'latency' in STEPS:
            stdout, err = step(out, column, f'latency.{run}')
            j = bench_json(stdout)
            if err or not j or not j['connect_plus_1rtt'].get('n'):
                res['errors'].append(f'latency round {run}: {err or "no result"}')
            else:
                p50.append(j['connect_plus_1rtt']['p50_ms'])
                p99.append(j['connect_plus_1rtt']['p99_ms'])
                if j['errors']:
                    res['errors'].append(f'latency round {run}: {j["errors"]} failed connections')
        if 'thru' in STEPS:
            stdout, err = step(out, column, f'thru.{run}')
            j = bench_json(stdout)
            if err or not j:
                res['errors'].append(f'thru round {run}: {err or "no result"}')
            elif j['bytes'] != j['expected']:
                res['errors'].append(f'thru round {run}: {j["bytes"]} of {j["expected"]} bytes')
            else:
                gib.append(j['MiB_per_s'] / 1024)
        if 'conc' in STEPS:
            stdout, err = step(out, column, f'conc.{run}')
            j = bench_json(stdout)
            if err or not j:
                res['errors'].append(f'conc round {run}: {err or "no result"}')
            else:
                # A tunnel fails at most once: at its set-up or in its round trips.
                served.append(j['C'] - j['errors'])
                res['conc_of'] = j['C']
                if 'setup_under_load' in j:
                    setup.append(j['setup_under_load']['p50_ms'])
                if j['errors']:
                    res['errors'].append(f'conc round {run}: {j["errors"]} errors, e.g. {j["error_samples"][:1]}')
    res.update({
        'connect_1rtt_p50_ms': median(p50), 'connect_1rtt_p99_ms': median(p99),
        'tunnel_GiB_per_s': median(gib),
        'conc_served_min': min(served) if served else None,
        'conc_setup_p50_ms': median(setup),
        'rounds_ok': {'latency': len(p50), 'thru': len(gib), 'conc': len(served)},
    })
    return res


def dnsperf_figures(stdout):
    qps = re.search(r'Queries per second:\s+([\d.]+)', stdout or '')
    lost = re.search(r'Queries lost:\s+\d+ \(([\d.]+)%\)', stdout or '')
    codes = re.search(r'Response codes:\s+(.*)', stdout or '')
    if not qps:
        return None
    return float(qps.group(1)), float(lost.group(1)) if lost else None, codes.group(1).strip() if codes else ''


def dns_column(out, column, runs):
    res = {'errors': []}
    failed = read(os.path.join(out, f'dns-{column}.failed'))
    if failed:
        res['failed'] = failed.strip()
        return res
    qps, lost = [], []
    for run in range(1, runs + 1):
        stdout, err = step(out, f'dns-{column}', str(run))
        figures = dnsperf_figures(stdout)
        if err or not figures:
            res['errors'].append(f'dnsperf round {run}: {err or "no figures in its output"}')
            continue
        if figures[0] == 0:
            res['errors'].append(f'dnsperf round {run}: no answers ({figures[1]}% of the queries lost)')
            continue
        qps.append(figures[0])
        if figures[1] is not None:
            lost.append(figures[1])
        res['response_codes'] = figures[2]
    res.update({'qps': median(qps), 'lost_percent': median(lost), 'rounds_ok': len(qps)})
    return res


def ratio(a, b):
    return round(a / b, 2) if a is not None and b else None


def fmt(v, unit=''):
    return '-' if v is None else f'{v}{unit}'


def main():
    out, runs, columns = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
    json_file = sys.argv[4] if len(sys.argv) > 4 else ''
    proxies = {c: proxy_column(out, c, runs) for c in PROXIES if c in columns}
    dns = {c: dns_column(out, c, runs) for c in DNS if c in columns and 'dns' in STEPS}

    squid_p50 = proxies.get('squid', {}).get('connect_1rtt_p50_ms')
    direct_gib = proxies.get('direct', {}).get('tunnel_GiB_per_s')
    dnsmasq_qps = dns.get('dnsmasq', {}).get('qps')
    for c, r in proxies.items():
        r['p50_ratio_to_squid'] = ratio(r.get('connect_1rtt_p50_ms'), squid_p50)
        r['throughput_ratio_to_direct'] = ratio(r.get('tunnel_GiB_per_s'), direct_gib)
    for c, r in dns.items():
        r['qps_ratio_to_dnsmasq'] = ratio(r.get('qps'), dnsmasq_qps)

    ours, ours_dns = proxies.get('sandboxd', {}), dns.get('sandboxd', {})

    def target(ok):
        return None if ok is None else bool(ok)
    targets = {
        'setup_p50_not_worse_than_squid': target(
            None if ours.get('connect_1rtt_p50_ms') is None or squid_p50 is None
            else ours['connect_1rtt_p50_ms'] <= squid_p50),
        'throughput_at_least_0.8_of_direct': target(
            None if ours.get('throughput_ratio_to_direct') is None
            else ours['throughput_ratio_to_direct'] >= 0.8),
        'all_concurrent_tunnels_served': target(
            None if ours.get('conc_served_min') is None
            else ours['conc_served_min'] == ours.get('conc_of')),
        'qps_at_least_dnsmasq': target(
            None if ours_dns.get('qps') is None or dnsmasq_qps is None
            else ours_dns['qps'] >= dnsmasq_qps),
    }

    print(f'\nmedians over {runs} round(s)\n')
    print('| | CONNECT + 1 round trip p50 (p99) | ratio to squid | 1 GiB tunnel | ratio to direct '
          '| concurrent tunnels served (setup p50) | refuses an unlisted name |')
    print('|---|---|---|---|---|---|---|')
    for c, r in proxies.items():
        if 'failed' in r:
            print(f'| {c} | failed: {r["failed"]} | | | | | |')
            continue
        served = '-' if r.get('conc_served_min') is None else \
            f'{r["conc_served_min"]} of {r.get("conc_of")} ({fmt(r.get("conc_setup_p50_ms"), " ms")})'
        refuses = {True: 'yes', False: 'NO', None: '-'}[r.get('refuses_unlisted_name')]
        gib = r.get('tunnel_GiB_per_s')
        print(f'| {c} | {fmt(r.get("connect_1rtt_p50_ms"), " ms")} ({fmt(r.get("connect_1rtt_p99_ms"), " ms")}) '
              f'| {fmt(r.get("p50_ratio_to_squid"))} | {fmt(None if gib is None else round(gib, 2), " GiB/s")} '
              f'| {fmt(r.get("throughput_ratio_to_direct"))} | {served} | {refuses} |')
    if dns:
        print('\n| resolver (dnsperf) | queries/s | lost | ratio to dnsmasq |')
        print('|---|---|---|---|')
        for c, r in dns.items():
            if 'failed' in r:
                print(f'| {c} | failed: {r["failed"]} | | |')
                continue
            qps = r.get('qps')
            print(f'| {c} | {fmt(None if qps is None else round(qps))} | {fmt(r.get("lost_percent"), "%")} '
                  f'| {fmt(r.get("qps_ratio_to_dnsmasq"))} |')
    problems = [(c, e) for group in (proxies, dns) for c, r in group.items() for e in r['errors']]
    if problems:
        print('\nproblems:')
        for c, e in problems:
            print(f'  {c}: {e}')
    print('\ntargets for sandboxd: ' + ', '.join(
        f'{k}: {"met" if v else "NOT met" if v is False else "not measured"}' for k, v in targets.items()))
    result = {'rounds': runs, 'proxies': proxies, 'dns': dns, 'targets': targets}
    print('\n' + json.dumps(result))
    if json_file:
        with open(json_file, 'w') as f:
            json.dump(result, f, indent=2)


if __name__ == '__main__':
    main()
