'use strict';
// Node's own `http` (no dependencies) on the socket inherited at fd 3 under `corral run`.
// GET /who -> {"pid", "peer", "peer_port"}. See docs/src/recipes/node-http.md.
const http = require('node:http');

const server = http.createServer((req, res) => {
  if (req.url === '/who') {
    const body = JSON.stringify({ pid: process.pid, peer: req.socket.remoteAddress, peer_port: req.socket.remotePort });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  } else if (req.url === '/') {
    res.end(`hello from ${process.pid}\n`);
  } else {
    res.writeHead(404).end('not found\n');
  }
});
server.listen({ fd: 3 }, () => console.log(`node http ${process.pid} serving fd 3`));
// Graceful stop: stop accepting, close idle keep-alive connections, finish what is in flight, exit 0.
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});
