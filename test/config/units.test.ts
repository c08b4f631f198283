// Durations, sizes, host:port and JSON selectors: the small syntaxes of config/routes.yaml.
import t from 'tap'
import { isSidecarError } from '../../src/errors.ts'
import { formatDuration, formatSize, parseDuration, parseHostPort, parseSelector, parseSize, type SelectorStep } from '../../src/config/units.ts'

t.test('parseDuration', async (t) => {
  const cases: Array<[string, number | undefined]> = [
    ['500ms', 500], ['30s', 30_000], ['5m', 300_000], ['1h', 3_600_000], ['1.5s', 1500], ['0s', 0],
    ['0.5ms', 1], ['30', undefined], ['30 s', undefined], ['-1s', undefined], ['1d', undefined], ['s', undefined],
    ['1S', undefined], ['', undefined], ['1m30s', undefined],
  ]
  for (const [text, want] of cases) t.equal(parseDuration(text), want, JSON.stringify(text))
})

t.test('parseSize: IEC and SI units', async (t) => {
  const cases: Array<[string, number | undefined]> = [
    ['512B', 512], ['64KiB', 65_536], ['1MiB', 1_048_576], ['1GiB', 1024 ** 3], ['1.5KiB', 1536],
    ['1kB', 1000], ['1KB', 1000], ['1MB', 1_000_000], ['2GB', 2e9], ['0B', 0],
    ['1', undefined], ['1mb', undefined], ['1 MiB', undefined], ['1Mi', undefined], ['MiB', undefined],
  ]
  for (const [text, want] of cases) t.equal(parseSize(text), want, JSON.stringify(text))
})

t.test('formatDuration and formatSize give the shortest exact spelling', async (t) => {
  t.strictSame([30_000, 1500, 300_000, 3_600_000, 0, 90_000].map(formatDuration), ['30s', '1500ms', '5m', '1h', '0ms', '90s'])
  t.strictSame([1_048_576, 65_536, 1000, 0, 1024 ** 3].map(formatSize), ['1MiB', '64KiB', '1000B', '0B', '1GiB'])
  for (const ms of [30_000, 1500, 7]) t.equal(parseDuration(formatDuration(ms)), ms)
  for (const bytes of [1_048_576, 1000, 3]) t.equal(parseSize(formatSize(bytes)), bytes)
})

t.test('parseHostPort', async (t) => {
  const cases: Array<[string, { host: string, port: number } | undefined]> = [
    ['0.0.0.0:8080', { host: '0.0.0.0', port: 8080 }],
    ['127.0.0.1:0', { host: '127.0.0.1', port: 0 }],
    ['localhost:65535', { host: 'localhost', port: 65_535 }],
    [':8080', { host: '0.0.0.0', port: 8080 }],
    ['[::]:80', { host: '::', port: 80 }],
    ['[::1]:9091', { host: '::1', port: 9091 }],
    ['localhost:65536', undefined],
    ['8080', undefined],
    ['a:b', undefined],
    ['::1:80', undefined],
    ['http://x:80', undefined],
    ['host:123456', undefined],
  ]
  for (const [text, want] of cases) t.strictSame(parseHostPort(text), want, JSON.stringify(text))
})

t.test('parseSelector: valid selectors', async (t) => {
  const key = (k: string): SelectorStep => ({ kind: 'key', key: k })
  const index = (i: number): SelectorStep => ({ kind: 'index', index: i })
  const any: SelectorStep = { kind: 'any' }
  const cases: Array<[string, SelectorStep[]]> = [
    ['a', [key('a')]],
    ['a.b', [key('a'), key('b')]],
    ['components[*].calls[*].method', [key('components'), any, key('calls'), any, key('method')]],
    ['a[0]', [key('a'), index(0)]],
    ['a[12][*]', [key('a'), index(12), any]],
    ['[0].id', [index(0), key('id')]],
    ['[*]', [any]],
    ['["a.b"]', [key('a.b')]],
    ['x["odd key"].y', [key('x'), key('odd key'), key('y')]],
    ['["say \\"hi\\""]', [key('say "hi"')]],
    ['["[*]"]', [key('[*]')]],
    ['a-b.$c.@d', [key('a-b'), key('$c'), key('@d')]],
    ['__proto__.x', [key('__proto__'), key('x')]],
    ['größe', [key('größe')]],
  ]
  for (const [sel, want] of cases) t.strictSame(parseSelector(sel), want, sel)
})

t.test('parseSelector: invalid selectors name the offset', async (t) => {
  const cases: Array<[string, number, string]> = [
    ['', 0, 'empty selector'],
    ['a..b', 2, 'empty key'],
    ['.a', 0, 'empty key'],
    ['a.', 2, 'selector ends with "."'],
    ['a.[0]', 2, 'expected a key after "."'],
    ['a[01]', 1, 'expected [n], [*] or ["key"]'],
    ['a[x]', 1, 'expected [n], [*] or ["key"]'],
    ['a[-1]', 1, 'expected [n], [*] or ["key"]'],
    ['a["b]', 1, 'unterminated ["..."]'],
    ['a["b"', 1, 'unterminated ["..."]'],
    ['a["\\x"]', 2, 'invalid JSON string'],
    ['a b', 1, 'unexpected " ": quote such keys as ["..."]'],
    ['a[0]b', 4, 'expected "." or "[" before a key'],
    ["a.'b'", 2, 'unexpected "\'": quote such keys as ["..."]'],
  ]
  for (const [sel, offset, reason] of cases) {
    try {
      parseSelector(sel)
      t.fail(`${JSON.stringify(sel)} parsed`)
    } catch (err) {
      if (!isSidecarError(err)) throw err
      t.equal(err.code, 'SIDECAR_ERR_CONFIG_SELECTOR', sel)
      t.strictSame(err.details, { selector: sel, offset, reason }, sel)
      t.equal(err.message, `invalid selector ${JSON.stringify(sel)}: ${reason} at offset ${offset}`)
    }
  }
})
