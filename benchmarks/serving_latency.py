"""Latency and throughput of the online endpoint, with and without micro-batching.

For each mode, starts `python -m serving` in a subprocess on a free loopback
port, waits until /readyz says ready, then runs the load generator in a
second process (this script with --load): CONCURRENCY clients each sending
keyed single-review requests back to back, bounded by --requests and
--max_seconds, after a warm-up. The modes: TF Serving's v1 :predict without
and with micro-batching, and the Open Inference Protocol's v2 /infer (typed
tensors, the key as a tensor) with micro-batching. Prints a table and, as
the LAST line, one JSON object with the figures.

    python benchmarks/serving_latency.py [--model_dir data/models/sentiment/1]
        [--requests 2000] [--concurrency 16] [--instances 1]

Server and load generator share the machine's cores, so absolute numbers are
pessimistic; compare the modes with each other on the same machine.
"""
import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REVIEWS = [
    'The film is based on a prize-winning novel.',
    'The film is fast moving and has several great action scenes.',
    'The film was very boring. I walked out half-way.',
]


def _percentile(sorted_values, fraction):
  if not sorted_values:
    return float('nan')
  index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
  return sorted_values[index]


def _body(protocol, n, instances):
  """Request n of `instances` keyed reviews, in v1 rows or v2 tensors."""
  keys = [f'r{n}-{i}' for i in range(instances)]
  texts = [REVIEWS[(n + i) % len(REVIEWS)] for i in range(instances)]
  if protocol == 'v1':
    return {'instances': [{'key': k, 'reviews': t}
                          for k, t in zip(keys, texts)]}
  return {'inputs': [
      {'name': 'key', 'datatype': 'BYTES', 'shape': [instances], 'data': keys},
      {'name': 'reviews', 'datatype': 'BYTES', 'shape': [instances],
       'data': texts}]}


async def _load(url, protocol, requests, concurrency, instances, max_seconds,
                warmup):
  """Runs the load; returns latency figures (ms) and requests/s."""
  import httpx
  limits = httpx.Limits(max_connections=concurrency,
                        max_keepalive_connections=concurrency)
  async with httpx.AsyncClient(limits=limits, timeout=60) as client:
    async def one(n):
      body = _body(protocol, n, instances)
      started = time.perf_counter()
      response = await client.post(url, json=body)
      elapsed = time.perf_counter() - started
      return elapsed, response.status_code == 200

    await asyncio.gather(*[one(-1 - n) for n in range(warmup)])
    counter = iter(range(requests))
    latencies, errors = [], 0
    deadline = time.perf_counter() + max_seconds

    async def client_loop():
      nonlocal errors
      for n in counter:
        if time.perf_counter() > deadline:
          return
        elapsed, ok = await one(n)
        latencies.append(elapsed)
        errors += not ok

    started = time.perf_counter()
    await asyncio.gather(*[client_loop() for _ in range(concurrency)])
    wall = time.perf_counter() - started
  latencies.sort()
  return {
      'requests': len(latencies),
      'errors': errors,
      'p50_ms': round(1000 * _percentile(latencies, 0.50), 2),
      'p99_ms': round(1000 * _percentile(latencies, 0.99), 2),
      'requests_per_s': round(len(latencies) / wall, 1),
      'instances_per_s': round(len(latencies) * instances / wall, 1),
  }


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def run_mode(args, server_flags, protocol):
  """Starts a server with `server_flags`, loads it from a second process."""
  # (Imported here: the --load process runs this file as a script.)
  from harness.server_process import serving_process
  port = _free_port()
  with serving_process(
      [sys.executable, '-m', 'serving', '--model_dir', args.model_dir,
       '--model_name', 'bench', '--port', str(port), '--log_level',
       'warning', '--max_instances', str(max(1000, args.instances)),
       *server_flags], port, ready_timeout=180, cwd=REPO,
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as base:
    url = (f'{base}/v1/models/bench:predict' if protocol == 'v1' else
           f'{base}/v2/models/bench/infer')
    load = subprocess.run(
        [sys.executable, os.path.abspath(__file__), '--load', url,
         '--protocol', protocol, '--requests', str(args.requests),
         '--concurrency', str(args.concurrency), '--instances',
         str(args.instances), '--max_seconds', str(args.max_seconds)],
        cwd=REPO, capture_output=True, text=True, check=True,
        timeout=args.max_seconds + 300)
    return json.loads(load.stdout.strip().splitlines()[-1])


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model_dir',
                      default=os.path.join('data', 'models', 'sentiment', '1'),
                      help='SavedModel to serve (default: the demo model).')
  parser.add_argument('--requests', type=int, default=2000,
                      help='Measured requests per mode (default 2000).')
  parser.add_argument('--concurrency', type=int, default=16,
                      help='Concurrent clients (default 16).')
  parser.add_argument('--instances', type=int, default=1,
                      help='Instances per request (default 1).')
  parser.add_argument('--max_seconds', type=float, default=60,
                      help='Stop a mode after this long (default 60).')
  parser.add_argument('--micro_batch_size', type=int, default=64,
                      help='Micro-batch size for the batching mode.')
  parser.add_argument('--micro_batch_timeout_ms', type=float, default=2,
                      help='Micro-batch window for the batching mode.')
  parser.add_argument('--load', metavar='URL',
                      help=argparse.SUPPRESS)  # internal: be the load process
  parser.add_argument('--protocol', choices=['v1', 'v2'], default='v1',
                      help=argparse.SUPPRESS)  # internal: the load's format
  args = parser.parse_args(argv)

  if args.load:
    figures = asyncio.run(_load(args.load, args.protocol, args.requests,
                                args.concurrency, args.instances,
                                args.max_seconds,
                                warmup=min(100, args.requests)))
    print(json.dumps(figures))
    return 0

  if not os.path.exists(os.path.join(args.model_dir, 'saved_model.pb')):
    print(f'no SavedModel at {args.model_dir}; build the demo model with '
          '`python -m models.train_demo` or pass --model_dir', file=sys.stderr)
    return 2
  batching = ['--micro_batch_size', str(args.micro_batch_size),
              '--micro_batch_timeout_ms', str(args.micro_batch_timeout_ms)]
  modes = {
      'no_batching': ([], 'v1'),
      'micro_batching': (batching, 'v1'),
      'micro_batching_v2': (batching, 'v2'),
  }
  results = {name: run_mode(args, flags, protocol)
             for name, (flags, protocol) in modes.items()}

  print(f'online endpoint, {args.concurrency} concurrent clients, '
        f'{args.instances} instance(s)/request, model {args.model_dir}, '
        f'{os.cpu_count()} cores shared by server and load')
  header = (f'{"mode":<19}{"requests":>10}{"errors":>8}{"p50 ms":>10}'
            f'{"p99 ms":>10}{"req/s":>10}{"inst/s":>10}')
  print(header)
  print('-' * len(header))
  for name, r in results.items():
    print(f'{name:<19}{r["requests"]:>10}{r["errors"]:>8}{r["p50_ms"]:>10}'
          f'{r["p99_ms"]:>10}{r["requests_per_s"]:>10}'
          f'{r["instances_per_s"]:>10}')
  print(json.dumps({
      'benchmark': 'serving_latency', 'concurrency': args.concurrency,
      'instances_per_request': args.instances,
      'micro_batch_size': args.micro_batch_size,
      'micro_batch_timeout_ms': args.micro_batch_timeout_ms, **results}))
  return 0


if __name__ == '__main__':
  sys.exit(main())
