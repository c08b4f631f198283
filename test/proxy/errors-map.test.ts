// The error map as a table: every kind of network/undici failure → code, status, message;
// `cause` kept; refusals (also inside an AggregateError) recognised for retries.
import t from 'tap'
import { errors } from 'undici'
import { isConnectionRefused, upstreamError } from '../../src/proxy/errors-map.ts'

function sys (code: string): Error {
  return Object.assign(new Error(`connect ${code} 127.0.0.1:1`), { code })
}

t.test('before the response started', async (t) => {
  const table: [string, unknown, string, number | undefined][] = [
    ['refused', sys('ECONNREFUSED'), 'SIDECAR_ERR_UPSTREAM_UNAVAILABLE', 502],
    ['refused on every address', new AggregateError([sys('ECONNREFUSED'), sys('ECONNREFUSED')]), 'SIDECAR_ERR_UPSTREAM_UNAVAILABLE', 502],
    ['unknown host', sys('ENOTFOUND'), 'SIDECAR_ERR_UPSTREAM_UNAVAILABLE', 502],
    ['no route', sys('EHOSTUNREACH'), 'SIDECAR_ERR_UPSTREAM_UNAVAILABLE', 502],
    ['connect timeout', new errors.ConnectTimeoutError(), 'SIDECAR_ERR_UPSTREAM_UNAVAILABLE', 502],
    ['forwarder closed', new errors.ClientClosedError(), 'SIDECAR_ERR_UPSTREAM_UNAVAILABLE', 502],
    ['headers timeout', new errors.HeadersTimeoutError(), 'SIDECAR_ERR_UPSTREAM_TIMEOUT', 504],
    ['other side closed', new errors.SocketError('other side closed'), 'SIDECAR_ERR_UPSTREAM_RESET', 502],
    ['reset', sys('ECONNRESET'), 'SIDECAR_ERR_UPSTREAM_RESET', 502],
    ['unrequested 100', new errors.SocketError('bad response'), 'SIDECAR_ERR_UPSTREAM_BAD_RESPONSE', 502],
    ['unrequested 101', new errors.SocketError('bad upgrade'), 'SIDECAR_ERR_UPSTREAM_BAD_RESPONSE', 502],
    ['parser error', new errors.HTTPParserError('Response does not match the HTTP/1.1 protocol'), 'SIDECAR_ERR_UPSTREAM_BAD_RESPONSE', 502],
    ['header overflow', new errors.HeadersOverflowError(), 'SIDECAR_ERR_UPSTREAM_BAD_RESPONSE', 502],
    ['invalid status for Node', Object.assign(new RangeError('Invalid status code: 1000'), { code: 'ERR_HTTP_INVALID_STATUS_CODE' }), 'SIDECAR_ERR_UPSTREAM_BAD_RESPONSE', 502],
    ['header undici refuses', new errors.InvalidArgumentError('invalid content-length header'), 'SIDECAR_ERR_SERVER_BAD_REQUEST', 400],
    ['a non-error', 'boom', 'SIDECAR_ERR_UPSTREAM_RESET', 502],
  ]
  for (const [label, err, code, status] of table) {
    const e = upstreamError(err, false)
    t.equal(e.code, code, `${label}: code`)
    t.equal(e.status, status, `${label}: status`)
    t.equal(e.cause, err, `${label}: cause kept`)
    t.notMatch(JSON.stringify(e.toJSON()), /at |\n/, `${label}: no stack in the body`)
  }
  t.strictSame(upstreamError(new errors.InvalidArgumentError('invalid content-length header'), false).toJSON(),
    { error: { code: 'SIDECAR_ERR_SERVER_BAD_REQUEST', message: 'bad request: invalid content-length header' } })
})

t.test('after the response started every failure is ABORTED, with no status', async (t) => {
  for (const err of [sys('ECONNRESET'), new errors.SocketError('other side closed'), new errors.HeadersTimeoutError()]) {
    const e = upstreamError(err, true)
    t.equal(e.code, 'SIDECAR_ERR_UPSTREAM_ABORTED')
    t.equal(e.status, undefined)
    t.equal(e.message, `the app ended the response early: ${String((err as unknown as { code: string }).code)}`)
  }
})

t.test('isConnectionRefused: only refusals, also when every address refused', async (t) => {
  t.equal(isConnectionRefused(sys('ECONNREFUSED')), true)
  t.equal(isConnectionRefused(new AggregateError([sys('ECONNREFUSED'), sys('ECONNREFUSED')])), true)
  t.equal(isConnectionRefused(new AggregateError([sys('ECONNREFUSED'), sys('ETIMEDOUT')])), false)
  t.equal(isConnectionRefused(sys('ECONNRESET')), false)
  t.equal(isConnectionRefused(new errors.HeadersTimeoutError()), false)
  t.equal(isConnectionRefused(null), false)
})
