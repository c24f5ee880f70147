"""The online endpoint under 10x its sustained rate for 30 s, then relieved.

Starts `python -m serving` over the demo model (a subprocess), measures its
sustained rate R (closed loop: CONCURRENCY clients back to back), offers
10 R for --seconds from an open-loop client bounded at --max_outstanding
requests in flight, then measures again at the sustained load. For each
server variant (admission control at its default bound, and off) it
reports: requests offered, answered 200, shed (503 with Retry-After),
dropped by the client's own bound; p50/p99 latency of the answered ones
during the overload and after; the server's resident memory before, at its
peak and after. Prints a table and, as the LAST line, one JSON object.

    python -m benchmarks.serving_overload [--seconds 30] [--instances 8]

Server and load generator share the machine's cores: the client may not
reach 10 R; the table says what it did offer.
"""
import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time

from benchmarks.serving_latency import REPO
from benchmarks.serving_latency import _body
from benchmarks.serving_latency import _free_port
from benchmarks.serving_latency import _percentile
from harness.server_process import stop as stop_server
from harness.server_process import wait_ready


def _rss_mb(pid):
  with open(f'/proc/{pid}/status', encoding='ascii') as f:
    for line in f:
      if line.startswith('VmRSS:'):
        return int(line.split()[1]) / 1024
  return 0.0


_JSON = {'content-type': 'application/json'}
PROBE_INTERVAL_S = 0.2
WARMUP_S = 2


def _bodies(instances):
  """A few request bodies, encoded once: the client's time goes to
  sending, not to JSON."""
  return [json.dumps(_body('v1', n, instances)).encode() for n in range(16)]


def _latencies(samples):
  ok = sorted(s for s, status in samples if status == 200)
  return {'p50_ms': round(1000 * _percentile(ok, 0.5), 1),
          'p99_ms': round(1000 * _percentile(ok, 0.99), 1)}


async def _closed_loop(client, url, concurrency, bodies, seconds):
  """CONCURRENCY clients back to back: (latency, status) samples."""
  samples = []
  deadline = time.perf_counter() + seconds

  async def loop():
    while time.perf_counter() < deadline:
      started = time.perf_counter()
      response = await client.post(url, content=bodies[len(samples) % 16],
                                   headers=_JSON)
      samples.append((time.perf_counter() - started, response.status_code))

  await asyncio.gather(*[loop() for _ in range(concurrency)])
  return samples


async def _open_loop(client, url, rate, seconds, bodies, max_outstanding):
  """`rate` requests a second whatever the answers, at most
  `max_outstanding` in flight (the rest are dropped by the client):
  (samples, dropped, offered, retry_after seen)."""
  samples, dropped, retry_after = [], 0, set()
  outstanding = 0
  tasks = set()

  async def one(n):
    nonlocal outstanding
    started = time.perf_counter()
    try:
      response = await client.post(url, content=bodies[n % 16],
                                   headers=_JSON)
      samples.append((time.perf_counter() - started, response.status_code))
      if response.status_code == 503 and 'retry-after' in response.headers:
        retry_after.add(response.headers['retry-after'])
    except Exception:  # pylint: disable=broad-except  # timeouts, resets
      samples.append((time.perf_counter() - started, 0))
    finally:
      outstanding -= 1

  started = time.perf_counter()
  n = 0
  while time.perf_counter() - started < seconds:
    due = started + n / rate
    delay = due - time.perf_counter()
    if delay > 0:
      await asyncio.sleep(delay)
    n += 1
    if outstanding >= max_outstanding:
      dropped += 1
      continue
    outstanding += 1
    task = asyncio.get_running_loop().create_task(one(n))
    tasks.add(task)
    task.add_done_callback(tasks.discard)
  await asyncio.gather(*tasks)
  return samples, dropped, n, sorted(retry_after)


async def _probe(url, args):
  """What one more user sees during the overload: a request every
  PROBE_INTERVAL_S, from a process of its own (the flood's client lags
  behind its own schedule; this one does not)."""
  import httpx
  samples = []
  body = _bodies(args.instances)[0]
  await asyncio.sleep(args.delay)
  deadline = time.perf_counter() + args.seconds
  async with httpx.AsyncClient(timeout=120) as client:
    while time.perf_counter() < deadline:
      started = time.perf_counter()
      response = await client.post(url, content=body, headers=_JSON)
      samples.append((time.perf_counter() - started, response.status_code))
      await asyncio.sleep(PROBE_INTERVAL_S)
  statuses = [status for _, status in samples]
  return {'requests': len(samples), 'answered': statuses.count(200),
          'shed_503': statuses.count(503), **_latencies(samples)}


async def _load(url, args):
  import httpx
  limits = httpx.Limits(max_connections=args.max_outstanding,
                        max_keepalive_connections=args.max_outstanding)
  bodies = _bodies(args.instances)
  async with httpx.AsyncClient(limits=limits, timeout=120) as client:
    await _closed_loop(client, url, args.concurrency, bodies, WARMUP_S)
    before = await _closed_loop(client, url, args.concurrency, bodies,
                                args.measure_seconds)
    rate = len(before) / args.measure_seconds
    over, dropped, offered, retry_after = await _open_loop(
        client, url, 10 * rate, args.seconds, bodies, args.max_outstanding)
    after = await _closed_loop(client, url, args.concurrency, bodies,
                               args.measure_seconds)
  statuses = [status for _, status in over]
  return {
      'sustained_requests_per_s': round(rate, 1),
      'sustained': _latencies(before),
      'offered': offered,
      'offered_per_s': round(offered / args.seconds, 1),
      'answered': statuses.count(200), 'shed_503': statuses.count(503),
      'other_errors': len(statuses) - statuses.count(200)
                      - statuses.count(503),
      'client_dropped': dropped, 'retry_after_values': retry_after,
      'overload': _latencies(over),
      'after': {**_latencies(after), 'requests': len(after),
                'errors': sum(status != 200 for _, status in after)},
  }


def run_variant(args, server_flags):
  port = _free_port()
  base = f'http://127.0.0.1:{port}'
  server = subprocess.Popen(
      [sys.executable, '-m', 'serving', '--model_dir', args.model_dir,
       '--model_name', 'bench', '--port', str(port), '--log_level',
       'warning', *server_flags],
      cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  memory, stop = [], threading.Event()

  def watch():
    while not stop.wait(0.5):
      memory.append(_rss_mb(server.pid))

  try:
    wait_ready(server, base)
    rss_before = _rss_mb(server.pid)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    url = f'{base}/v1/models/bench:predict'
    me = [sys.executable, '-m', 'benchmarks.serving_overload']
    probe = subprocess.Popen(
        [*me, '--probe', url, *_load_flags(args), '--delay',
         str(WARMUP_S + args.measure_seconds + 1)],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    load = subprocess.run(
        [*me, '--load', url, *_load_flags(args)],
        cwd=REPO, capture_output=True, text=True, check=True,
        timeout=args.seconds + 4 * args.measure_seconds + 600)
    stop.set()
    watcher.join()
    figures = json.loads(load.stdout.strip().splitlines()[-1])
    figures['probe'] = json.loads(probe.communicate(timeout=600)[0]
                                  .strip().splitlines()[-1])
    figures['rss_mb'] = {'before': round(rss_before),
                         'peak': round(max(memory or [rss_before])),
                         'after': round(_rss_mb(server.pid))}
    return figures
  finally:
    stop.set()
    stop_server(server)


def _load_flags(args):
  return ['--seconds', str(args.seconds), '--instances', str(args.instances),
          '--concurrency', str(args.concurrency), '--max_outstanding',
          str(args.max_outstanding), '--measure_seconds',
          str(args.measure_seconds)]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model_dir',
                      default=os.path.join('data', 'models', 'sentiment', '1'))
  parser.add_argument('--seconds', type=float, default=30,
                      help='Length of the 10x overload (default 30).')
  parser.add_argument('--measure_seconds', type=float, default=8,
                      help='Length of each sustained-load measurement.')
  parser.add_argument('--instances', type=int, default=256,
                      help='Instances per request (default 256: the model, '
                      'not HTTP, is what the overload saturates).')
  parser.add_argument('--concurrency', type=int, default=8,
                      help='Clients of the sustained load (default 8).')
  parser.add_argument('--max_outstanding', type=int, default=256,
                      help='The overload client\'s bound on requests in '
                      'flight (default 256).')
  parser.add_argument('--bounds', default='8,64,0',
                      help='The --max_pending_requests of each server run '
                      '(0: no admission control; default 8,64,0).')
  parser.add_argument('--load', metavar='URL', help=argparse.SUPPRESS)
  parser.add_argument('--probe', metavar='URL', help=argparse.SUPPRESS)
  parser.add_argument('--delay', type=float, default=0,
                      help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.load or args.probe:
    run = _load(args.load, args) if args.load else _probe(args.probe, args)
    print(json.dumps(asyncio.run(run)))
    return 0
  if not os.path.exists(os.path.join(args.model_dir, 'saved_model.pb')):
    print(f'no SavedModel at {args.model_dir}: run `make model`',
          file=sys.stderr)
    return 2
  variants = {f'--max_pending_requests {n}': ['--max_pending_requests', n]
              for n in args.bounds.split(',')}
  results = {name: run_variant(args, flags)
             for name, flags in variants.items()}
  print(f'10x overload for {args.seconds:g} s, {args.instances} instances '
        f'per request, client bound {args.max_outstanding} in flight, '
        f'{os.cpu_count()} cores shared by server and load')
  print('| server | sustained req/s | offered req/s | answered | shed 503 '
        '| other errors | client dropped | p99 sustained ms | probe: '
        'answered/shed, p99 ms | p99 after ms | RSS MB before/peak/after |')
  print('|---|---|---|---|---|---|---|---|---|---|---|')
  for name, r in results.items():
    rss, probe = r['rss_mb'], r['probe']
    print(f'| {name} | {r["sustained_requests_per_s"]} | '
          f'{r["offered_per_s"]} | {r["answered"]} | {r["shed_503"]} | '
          f'{r["other_errors"]} | {r["client_dropped"]} | '
          f'{r["sustained"]["p99_ms"]} | {probe["answered"]}/'
          f'{probe["shed_503"]}, {probe["p99_ms"]} | '
          f'{r["after"]["p99_ms"]} | {rss["before"]}/{rss["peak"]}/'
          f'{rss["after"]} |')
  print(json.dumps({'benchmark': 'serving_overload',
                    'seconds': args.seconds, 'instances': args.instances,
                    **results}))
  return 0


if __name__ == '__main__':
  sys.exit(main())
