// A plain Node worker for `corral run`: HTTP on the socket at fd 3 (socket activation),
// answers "<slot> <pid>", checks LISTEN_PID; speaks no sd_notify (ready by --ready delay:MS);
// drains on SIGTERM.
'use strict';
const http = require('node:http');
if (process.env.LISTEN_PID !== String(process.pid)) {
  console.error(`LISTEN_PID ${process.env.LISTEN_PID} is not my pid ${process.pid}`);
  process.exit(1);
}
const slot = process.env.CORRAL_SLOT ?? '?';
const server = http.createServer((req, res) => {
  const send = () => res.end(`${slot} ${process.pid}\n`);
  if (req.url.startsWith('/slow')) setTimeout(send, 50); else send();
});
server.keepAliveTimeout = 1000;
server.listen({ fd: 3 });
process.on('SIGTERM', () => { server.close(() => process.exit(0)); server.closeIdleConnections(); });
