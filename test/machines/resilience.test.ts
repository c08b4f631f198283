// Pure parts of the client's manners: Retry-After, backoff with jitter, the token bucket and the
// circuit breaker, each driven by a hand-moved clock.
import t from 'tap'
import { CircuitBreaker, TokenBucket, backoffDelay, parseRetryAfter } from '../../src/machines/resilience.ts'

t.test('parseRetryAfter', async (t) => {
  const now = Date.parse('2026-11-26T12:00:00Z')
  const cases: { name: string, input: string | string[] | undefined, want: number | undefined }[] = [
    { name: 'absent', input: undefined, want: undefined },
    { name: 'empty', input: ' ', want: undefined },
    { name: 'seconds', input: '2', want: 2000 },
    { name: 'fractional seconds', input: '0.15', want: 150 },
    { name: 'repeated header: the first', input: ['3', '9'], want: 3000 },
    { name: 'http-date', input: 'Thu, 26 Nov 2026 12:00:05 GMT', want: 5000 },
    { name: 'http-date in the past', input: 'Thu, 26 Nov 2026 11:00:00 GMT', want: 0 },
    { name: 'garbage', input: 'soon', want: undefined },
    { name: 'negative', input: '-1', want: undefined },
  ]
  for (const c of cases) t.equal(parseRetryAfter(c.input, now), c.want, c.name)
})

t.test('backoffDelay: full jitter under a capped exponential ceiling', async (t) => {
  const options = { baseMs: 100, capMs: 1000 }
  t.equal(backoffDelay(0, options, () => 1), 100)
  t.equal(backoffDelay(2, options, () => 1), 400)
  t.equal(backoffDelay(10, options, () => 1), 1000, 'capped')
  t.equal(backoffDelay(3, options, () => 0.5), 400)
  t.equal(backoffDelay(3, options, () => 0), 0)
})

t.test('TokenBucket: burst, then one token per 1/rate seconds, waiters queued', async (t) => {
  let clock = 0
  const bucket = new TokenBucket(1, 3, () => clock)
  t.strictSame([bucket.take(), bucket.take(), bucket.take()], [0, 0, 0], 'burst of 3')
  t.equal(bucket.take(), 1000, 'fourth waits a second')
  t.equal(bucket.take(), 2000, 'fifth queues behind it')
  clock = 10_000
  t.equal(bucket.take(), 0, 'refilled after a pause')
  t.equal(bucket.take(), 0)
  t.equal(bucket.take(), 0, 'never more than the burst saved')
  t.equal(bucket.take(), 1000)
})

t.test('CircuitBreaker: opens after N failures, one probe when half-open', async (t) => {
  let clock = 0
  const circuit = new CircuitBreaker({ failureThreshold: 3, openMs: 100 }, () => clock)
  circuit.failure(); circuit.failure()
  t.equal(circuit.check(), 0, 'closed below the threshold')
  circuit.success()
  circuit.failure(); circuit.failure()
  t.equal(circuit.state, 'closed', 'a success resets the count')
  circuit.failure()
  t.equal(circuit.state, 'open')
  t.equal(circuit.check(), 100)
  clock = 60
  t.equal(circuit.check(), 40)
  clock = 100
  t.equal(circuit.state, 'half-open')
  t.equal(circuit.check(), 0, 'one probe goes through')
  t.equal(circuit.check(), 100, 'a second caller waits while the probe is out')
  circuit.failure()
  t.equal(circuit.state, 'open', 'a failed probe opens it again')
  clock = 200
  t.equal(circuit.check(), 0)
  circuit.success()
  t.equal(circuit.state, 'closed', 'a good probe closes it')
  t.equal(circuit.consecutiveFailures, 0)
})
