'use strict';
// Express 5 on the socket inherited at fd 3 (app.listen passes its arguments to http.Server.listen).
// GET /who -> {"pid", "peer", "peer_port"}. docs/src/recipes/express.md; tests/real_programs.rs finds
// `express` through NODE_PATH (its cache under target/real-programs/), a user through `npm install` here.
const express = require('express');

const app = express();
app.get('/who', (req, res) => res.json({ pid: process.pid, peer: req.socket.remoteAddress, peer_port: req.socket.remotePort }));
app.get('/', (req, res) => res.send(`hello from ${process.pid}\n`));
const server = app.listen({ fd: 3 }, () => console.log(`express ${process.pid} serving fd 3`));
// Graceful stop: finish what is in flight, close idle keep-alive connections, exit 0.
process.on('SIGTERM', () => { server.close(() => process.exit(0)); server.closeIdleConnections(); });
