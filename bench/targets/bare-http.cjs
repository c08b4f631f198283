// Bare Node's floor for start-up and memory: an HTTP server that answers 200, nothing else.
// Run as a child: PORT=n. CommonJS, the fastest way Node loads a script (as the executable does).
'use strict'
const http = require('node:http')

http.createServer((req, res) => { res.end('ok\n') }).listen(Number(process.env.PORT), '127.0.0.1')
