// The Node app of `benches/supervisors.rs` under PM2 cluster mode (`pm2 start pm2_app.js -i 2`):
// the same server as tests/programs/activated_worker.js, but listening on process.env.PORT as
// PM2's cluster mode expects. Answers "<NODE_APP_INSTANCE> <pid>"; `/slow` waits 50 ms. Drains
// on SIGINT (the signal `pm2 reload`/`pm2 stop` send first) and SIGTERM, as the corral worker
// drains on SIGTERM.
'use strict';
const http = require('node:http');
const instance = process.env.NODE_APP_INSTANCE ?? '?';
const server = http.createServer((req, res) => {
  const send = () => res.end(`${instance} ${process.pid}\n`);
  if (req.url.startsWith('/slow')) setTimeout(send, 50); else send();
});
server.keepAliveTimeout = 1000;
server.listen(Number(process.env.PORT), '127.0.0.1');
const drain = () => { server.close(() => process.exit(0)); server.closeIdleConnections(); };
process.on('SIGINT', drain);
process.on('SIGTERM', drain);
