"""An HTTP proxy in front of a REST stand-in that can make the service fail.

A Google API that is down does not refuse connections: its front ends stay
up and answer HTTP 503 with an error body (status UNAVAILABLE, reason
backendError), which Google's clients and Beam's connectors recognise as
transient. The proxy forwards every request to the stand-in and, while a
rule holds, answers the requests it matches that way instead, so the real
client code meets the outage as it would in production.

  with FaultProxy('http://127.0.0.1:9050') as proxy:
    proxy.fail('/insertAll')        # streaming inserts unavailable
    ...
    proxy.heal()
"""
import http.client
import http.server
import json
import threading
import urllib.parse

# Hop-by-hop headers a proxy must not forward (RFC 9110 7.6.1), and the
# length and encoding it recomputes.
_DROP = frozenset({'connection', 'keep-alive', 'proxy-connection', 'te',
                   'trailer', 'transfer-encoding', 'upgrade',
                   'content-length'})


def unavailable_body(message):
  """The JSON Google APIs answer with a 503."""
  return json.dumps({'error': {
      'code': 503, 'message': message, 'status': 'UNAVAILABLE',
      'errors': [{'message': message, 'domain': 'global',
                  'reason': 'backendError'}]}}).encode()


class FaultProxy:
  """Forwards HTTP to `target` ('http://host:port'); see the module doc."""

  def __init__(self, target):
    parsed = urllib.parse.urlsplit(target)
    self._target = (parsed.hostname, parsed.port)
    self._rule = None
    self._lock = threading.Lock()
    self.refused = 0
    self.forwarded = 0
    self._server = None
    self._thread = None

  def fail(self, path_contains='', times=None):
    """Answers 503 to requests whose path contains `path_contains`, the
    next `times` of them (None: until heal())."""
    with self._lock:
      self._rule = [path_contains, times]

  def heal(self):
    with self._lock:
      self._rule = None

  def _refuses(self, path):
    with self._lock:
      rule = self._rule
      if rule is None or rule[0] not in path:
        self.forwarded += 1
        return False
      if rule[1] is not None:
        rule[1] -= 1
        if rule[1] <= 0:
          self._rule = None
      self.refused += 1
      return True

  @property
  def url(self):
    host, port = self._server.server_address[:2]
    return f'http://{host}:{port}'

  def __enter__(self):
    proxy = self

    class Handler(http.server.BaseHTTPRequestHandler):
      protocol_version = 'HTTP/1.1'

      def log_message(self, *args):  # quiet
        del args

      def _handle(self):
        length = int(self.headers.get('content-length') or 0)
        body = self.rfile.read(length) if length else b''
        if proxy._refuses(self.path):  # pylint: disable=protected-access
          self._answer(503, {'content-type': 'application/json'},
                       unavailable_body('the service is unavailable'))
          return
        upstream = http.client.HTTPConnection(*proxy._target, timeout=60)  # pylint: disable=protected-access
        try:
          headers = {k: v for k, v in self.headers.items()
                     if k.lower() not in _DROP}
          upstream.request(self.command, self.path, body=body,
                           headers=headers)
          response = upstream.getresponse()
          data = response.read()
          self._answer(response.status, dict(response.getheaders()), data)
        finally:
          upstream.close()

      def _answer(self, status, headers, data):
        self.send_response(status)
        for key, value in headers.items():
          if key.lower() not in _DROP:
            self.send_header(key, value)
        self.send_header('content-length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

      do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    self._server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    self._server.daemon_threads = True
    self._thread = threading.Thread(target=self._server.serve_forever,
                                    name='fault-proxy', daemon=True)
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._server.shutdown()
    self._server.server_close()
    self._thread.join(10)
