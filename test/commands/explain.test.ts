// `explain`: the rule that matches and why earlier ones do not, whether the body is buffered, and
// the answer of a Machine of each pool — for the cases users ask about (Livewire JSON bodies,
// curl's form default, large uploads, chunked bodies, reject policies, replayed requests).
import t, { type Test } from 'tap'
import path from 'node:path'
import { runExplain } from '../../src/commands/explain.ts'
import { captureIo } from './_io.ts'

const CONFIG = `app:
  url: http://127.0.0.1:8081
pools:
  tasker: {}
  uploads:
    oversize: forward
  reports:
    oversize: reject
    unavailable: reject
rules:
  - name: upload
    match: { method: POST, path: /upload }
    to: uploads
  - name: livewire-process
    match:
      method: POST
      path: /livewire/update
      headers: { x-livewire: true }
      json:
        components[*].calls[*].method: process
    to: tasker
  - name: report
    match: { path: "/reports/**" }
    to: reports
`

const NOT_ON_FLY = '(FLY_APP_NAME or FLY_MACHINE_ID is not set here: these are the answers of a Machine on Fly; off Fly the sidecar serves every request locally)'

/** Runs explain against CONFIG in a fresh directory; `{dir}` in argv names that directory. */
async function explain (t: Test, argv: string[], files: Record<string, string | Buffer> = {}): Promise<{ code: number, stdout: string, stderr: string, file: string }> {
  const dir = t.testdir({ 'routes.yaml': CONFIG, 'body.json': '{"components":[{"calls":[{"method":"refresh"},{"method":"process"}]}]}', ...files })
  const file = path.join(dir, 'routes.yaml')
  const c = captureIo()
  const code = await runExplain(['--config', file, ...argv.map((a) => a.replace('{dir}', dir))], c.io)
  return { code, stdout: c.stdout(), stderr: c.stderr(), file: path.relative(process.cwd(), file) }
}

t.test('a Livewire process() call: buffered, matched on its JSON, replayed from app Machines', async (t) => {
  const r = await explain(t, ['-X', 'POST', '-H', 'x-livewire: 1', '-H', 'Content-Type: application/json', '-d', '@{dir}/body.json', '/livewire/update'])
  t.equal(r.code, 0)
  t.equal(r.stderr, '')
  t.equal(r.stdout, [
    `config: ${r.file}`,
    'request: POST /livewire/update',
    '  x-livewire: 1',
    '  content-type: application/json',
    '  content-length: 70',
    '',
    'body: buffered, up to inspect.max-body (1MiB), for body rule livewire-process; the original bytes are then forwarded',
    '  70 bytes, parsed as JSON',
    '',
    'rules, first match wins:',
    '  no    upload (line 11): path /livewire/update does not match /upload',
    '  MATCH livewire-process (line 14): matched: method POST; path /livewire/update; header x-livewire present; json components[*].calls[*].method equals "process"',
    '  (1 later rule not evaluated)',
    'target: pool tasker (rule livewire-process)',
    '',
    'on a Machine of pool app: replay: 307 with fly-replay: instance=<id>;timeout=30s;fallback=prefer_self;state=livewire-process   (<id> = a Machine of pool tasker, found or created)',
    '  when no Machine of pool tasker can be had (not on Fly, no FLY_API_TOKEN, API down): served here (unavailable: local); proxied to http://127.0.0.1:8081',
    'on a Machine of pool tasker: served here: it belongs to pool tasker; proxied to http://127.0.0.1:8081',
    'on a Machine of pool uploads: replay: 307 with fly-replay: instance=<id>;timeout=30s;fallback=prefer_self;state=livewire-process   (<id> = a Machine of pool tasker, found or created)',
    '  when no Machine of pool tasker can be had (not on Fly, no FLY_API_TOKEN, API down): served here (unavailable: local); proxied to http://127.0.0.1:8081',
    'on a Machine of pool reports: replay: 307 with fly-replay: instance=<id>;timeout=30s;fallback=prefer_self;state=livewire-process   (<id> = a Machine of pool tasker, found or created)',
    '  when no Machine of pool tasker can be had (not on Fly, no FLY_API_TOKEN, API down): served here (unavailable: local); proxied to http://127.0.0.1:8081',
    '',
    NOT_ON_FLY,
    '',
  ].join('\n'))
})

t.test('-d without a content type is a form, as with curl: the JSON rule cannot match, nothing is buffered', async (t) => {
  const r = await explain(t, ['-H', 'x-livewire: 1', '-d', '{"components":[]}', '/livewire/update'])
  t.equal(r.code, 0)
  t.match(r.stdout, "request: POST /livewire/update\n  x-livewire: 1\n  content-type: application/x-www-form-urlencoded   (curl's default for -d; add -H 'content-type: application/json' for JSON)\n  content-length: 17\n")
  t.match(r.stdout, '\nbody: not buffered (decided on the method, path, headers and query: no body rule could still match); it streams to its destination untouched (17 bytes)\n')
  t.match(r.stdout, '\n  no    livewire-process (line 14): needs a JSON body; this one is a form\n')
  t.match(r.stdout, '\ntarget: pool app (no rule matched)\n')
  t.match(r.stdout, '\non a Machine of pool app: served here: it belongs to pool app; proxied to http://127.0.0.1:8081\n')
  t.match(r.stdout, '\non a Machine of pool tasker: 307 with fly-replay: elsewhere=true;state=default   (Fly sends it to an ordinary Machine)\n')
})

t.test('a JSON body whose calls are not process(): buffered, then the rule says what it reached', async (t) => {
  const r = await explain(t, ['-H', 'x-livewire: 1', '-H', 'content-type: application/json', '-d', '{"components":[{"calls":[{"method":"refresh"}]}]}', '/livewire/update'])
  t.match(r.stdout, '\nbody: buffered, up to inspect.max-body (1MiB), for body rule livewire-process; the original bytes are then forwarded\n  49 bytes, parsed as JSON\n')
  t.match(r.stdout, '\n  no    livewire-process (line 14): json components[*].calls[*].method reaches "refresh", wants equals "process"\n')
  t.match(r.stdout, '\ntarget: pool app (no rule matched)\n')
})

t.test('invalid JSON is not inspected: the body rule does not match, the request goes on', async (t) => {
  const r = await explain(t, ['-H', 'x-livewire: 1', '-H', 'content-type: application/json', '-d', '{"components":', '/livewire/update'])
  t.match(r.stdout, '\n  14 bytes: cannot be inspected as JSON')
  t.match(r.stdout, '\ntarget: pool app (no rule matched)\n')
})

t.test('a 2 MB upload cannot be replayed: oversize forward sends it over the private network', async (t) => {
  const r = await explain(t, ['-H', 'content-type: application/octet-stream', '-d', '@{dir}/big.bin', '/upload'], { 'big.bin': Buffer.alloc(2_000_000) })
  t.match(r.stdout, '\nbody: not buffered (decided on the method, path, headers and query: no body rule could still match); it streams to its destination untouched (2000000 bytes)\n')
  t.match(r.stdout, '\n  MATCH upload (line 11): matched: method POST; path /upload\n  (2 later rules not evaluated)\n')
  t.match(r.stdout, '\non a Machine of pool app: forward: the body cannot be replayed (over 1 MiB or chunked); oversize: forward proxies it to a Machine of pool uploads at http://<id>.vm.<app>.internal:8080\n  when no Machine of pool uploads can be had (not on Fly, no FLY_API_TOKEN, API down): served here (unavailable: local); proxied to http://127.0.0.1:8081\n')
})

t.test('a chunked body to a pool with oversize and unavailable reject: 503 with the error code', async (t) => {
  const r = await explain(t, ['-X', 'POST', '-H', 'transfer-encoding: chunked', '/reports/2026/q3'])
  t.match(r.stdout, '\n  MATCH report (line 22): matched: path /reports/**\n')
  t.match(r.stdout, '\non a Machine of pool app: 503 SIDECAR_ERR_REPLAY_OVERSIZE: the request body is too large to replay to pool reports\n')
  const small = await explain(t, ['/reports/2026/q3'])
  t.match(small.stdout, '\non a Machine of pool app: replay: 307 with fly-replay: instance=<id>;timeout=30s;fallback=prefer_self;state=report   (<id> = a Machine of pool reports, found or created)\n  when no Machine of pool reports can be had (not on Fly, no FLY_API_TOKEN, API down): 503 SIDECAR_ERR_REPLAY_POOL_UNAVAILABLE: no Machine of pool reports can be had\n')
})

t.test('a replayed request (fly-replay-src) is served wherever it lands', async (t) => {
  const r = await explain(t, ['-H', 'fly-replay-src: instance=abc;region=ams', '/reports/x'])
  for (const pool of ['app', 'tasker', 'uploads', 'reports']) {
    t.match(r.stdout, `\non a Machine of pool ${pool}: served here: already replayed (fly-replay-src is set), never replayed twice; proxied to http://127.0.0.1:8081\n`)
  }
})

t.test('a whole URL gives path, query and host', async (t) => {
  const r = await explain(t, ['https://my-app.fly.dev/search?q=a%20b&page=2'])
  t.match(r.stdout, '\nrequest: GET /search?q=a%20b&page=2\n  host: my-app.fly.dev\n\nbody: not buffered')
})

t.test('the health path is answered by the sidecar', async (t) => {
  const r = await explain(t, ['/_sidecar/health'])
  t.equal(r.code, 0)
  t.equal(r.stdout, `config: ${r.file}\nrequest: GET /_sidecar/health\n\n/_sidecar/health is the health path: answered by the sidecar itself on every Machine; no rule applies.\n`)
})

t.test('usage errors exit 2', async (t) => {
  for (const [argv, message] of [
    [[], 'give the request PATH, e.g. /livewire/update'],
    [['-H', 'no colon', '/x'], 'cannot read header "no colon": write it as \'Name: value\''],
    [['-d', 'a', '-d', 'b', '/x'], 'give the body once (-d)'],
    [['-d', '@{dir}/missing.json', '/x'], 'cannot read the body file'],
    [['--nope', '/x'], 'unknown option: --nope'],
    [['/a', '/b'], 'one PATH only (got /a and /b)'],
    [['relative'], 'PATH must start with / (got relative)'],
    [['-X'], '-X needs a method'],
  ] as const) {
    const r = await explain(t, [...argv])
    t.equal(r.code, 2, argv.join(' '))
    t.match(r.stderr, `fly-replay-sidecar explain: ${message}`)
    t.match(r.stderr, '\nusage: fly-replay-sidecar explain [--config FILE]')
    t.equal(r.stdout, '')
  }
})

t.test('-XPOST, --request, --header and -H "Name;" are read as curl reads them', async (t) => {
  const r = await explain(t, ['-XPUT', '--header', 'X-Empty;', '/x'])
  t.match(r.stdout, '\nrequest: PUT /x\n  x-empty: \n')
  const r2 = await explain(t, ['--request', 'delete', '/x'])
  t.match(r2.stdout, '\nrequest: DELETE /x\n')
})

t.test('a config with problems: they are printed on stderr, exit 1', async (t) => {
  const dir = t.testdir({ 'routes.yaml': 'app:\n  url: nope\n' })
  const file = path.join(dir, 'routes.yaml')
  const c = captureIo()
  t.equal(await runExplain(['--config', file, '/x'], c.io), 1)
  t.equal(c.stderr(), `${path.relative(process.cwd(), file)}:2:8: app.url: must be an http:// or https:// URL, got "nope"\n1 problem\n`)
  t.equal(c.stdout(), '')
})

t.test('elastic pools and pools on another app: which Machine, and the way back (issue 15)', async (t) => {
  const config = `app:
  url: http://127.0.0.1:8081
pools:
  tasker:
    max: 4
    concurrency: 2
  reports:
    app: shop-reports
rules:
  - name: lw
    match: { path: /livewire/update }
    to: tasker
  - name: rep
    match: { path: "/reports/**" }
    to: reports
`
  const dir = t.testdir({ 'routes.yaml': config })
  const run = async (argv: string[]): Promise<string> => {
    const c = captureIo()
    await runExplain(['--config', path.join(dir, 'routes.yaml'), ...argv], c.io)
    return c.stdout()
  }
  const lw = await run(['/livewire/update'])
  t.match(lw, 'on a Machine of pool app: replay: 307 with fly-replay: instance=<id>;timeout=30s;fallback=prefer_self;state=lw   (<id> = the least-loaded Machine with fewer than 2 requests of pool tasker; when there is none, one more is created, up to 4)\n')
  const rep = await run(['/reports/q3'])
  t.match(rep, 'on a Machine of pool app: replay: 307 with fly-replay: app=shop-reports;timeout=30s;fallback=prefer_self;state=rep   (Fly\'s proxy picks a Machine of app shop-reports, starting a stopped one)\n')
  t.notMatch(rep, 'when no Machine of pool reports', 'no Machines API involved: nothing can be unavailable')
  const page = await run(['/'])
  t.match(page, 'on a Machine of pool reports: served here: pool reports is another Fly app, and without SIDECAR_ORIGIN_APP on its Machines they serve it (with it: fly-replay app=<it>); proxied to http://127.0.0.1:8081\n')
})
