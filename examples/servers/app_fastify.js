'use strict';
// Fastify 5 on the socket inherited at fd 3 under `corral run`. GET /who -> {"pid", "peer", "peer_port"}.
// See docs/src/recipes/fastify.md.
// return503OnClosing: false: a request that reaches this worker while it drains (on a connection it had
// already accepted) is served, not answered 503 (fastify's default once close() is called).
const fastify = require('fastify')({ return503OnClosing: false });

fastify.get('/who', async (req) => ({ pid: process.pid, peer: req.socket.remoteAddress, peer_port: req.socket.remotePort }));
fastify.get('/', async () => `hello from ${process.pid}\n`);

fastify.listen({ fd: 3 }, (err) => {
  if (err) {
    console.error(err);
    process.exit(1);
  }
  console.log(`fastify ${process.pid} serving fd 3`);
});
// Graceful stop: fastify.close() stops accepting, waits for requests in flight, closes idle
// keep-alive connections (forceCloseConnections defaults to 'idle'), then exit 0.
process.on('SIGTERM', () => fastify.close().then(() => process.exit(0), () => process.exit(1)));
