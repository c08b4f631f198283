// The Machines API client's manners: a rate limiter per action, capped exponential backoff with
// full jitter, Retry-After parsing and a circuit breaker. Pure apart from the clock passed in.

/**
 * A token bucket: `ratePerSecond` tokens a second, at most `burst` saved. Fly limits most
 * Machines API actions to 1 req/s with a burst of 3, `get` to 5 req/s with a burst of 10
 * (platform notes §2.5). A caller that finds the bucket empty reserves the next token (the
 * count goes negative) and is told how long to wait, so waiters are served in arrival order.
 */
export class TokenBucket {
  readonly #rate: number
  readonly #burst: number
  readonly #now: () => number
  #tokens: number
  #at: number

  constructor (ratePerSecond: number, burst: number, now: () => number) {
    this.#rate = ratePerSecond
    this.#burst = burst
    this.#now = now
    this.#tokens = burst
    this.#at = now()
  }

  /** Takes one token; answers how many ms to wait before using it (0 = now). */
  take (): number {
    const now = this.#now()
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#at) / 1000) * this.#rate)
    this.#at = now
    this.#tokens -= 1
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens / this.#rate) * 1000)
  }
}

export interface BackoffOptions {
  /** First retry waits up to this long. */
  readonly baseMs: number
  /** No retry waits longer than this (before Retry-After is considered). */
  readonly capMs: number
}

/** Full jitter (AWS architecture blog): uniform in [0, min(cap, base·2^attempt)]. attempt is 0-based. */
export function backoffDelay (attempt: number, options: BackoffOptions, random: () => number): number {
  const ceiling = Math.min(options.capMs, options.baseMs * 2 ** attempt)
  return Math.round(random() * ceiling)
}

/**
 * `Retry-After` in ms: delta-seconds or an HTTP-date (RFC 9110 §10.2.3). Fractional seconds are
 * accepted too (lenient, harmless). Undefined when absent or unreadable.
 */
export function parseRetryAfter (value: string | string[] | undefined, now: number): number | undefined {
  const text = Array.isArray(value) ? value[0] : value
  if (text === undefined || text.trim() === '') return undefined
  const trimmed = text.trim()
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000)
  // An HTTP-date always names a day and month; Date.parse alone would read "-1" as a year.
  const date = /[A-Za-z]{3}/.test(trimmed) ? Date.parse(trimmed) : Number.NaN
  if (Number.isNaN(date)) return undefined
  return Math.max(0, date - now)
}

export interface CircuitOptions {
  /** Consecutive failed attempts that open the circuit. */
  readonly failureThreshold: number
  /** How long an open circuit refuses calls before letting one probe through. */
  readonly openMs: number
}

/**
 * Closed → (threshold consecutive failures) → open for `openMs` → half-open: one probe call is
 * let through; its success closes the circuit, its failure opens it again. While open, the
 * pools' `unavailable` policy applies instead of piling calls onto a failing API.
 */
export class CircuitBreaker {
  readonly #options: CircuitOptions
  readonly #now: () => number
  #failures = 0
  #openUntil = 0
  #probing = false

  constructor (options: CircuitOptions, now: () => number) {
    this.#options = options
    this.#now = now
  }

  /** ms the caller must not call for; 0 = go ahead (a half-open probe is claimed by this call). */
  check (): number {
    if (this.#failures < this.#options.failureThreshold) return 0
    const left = this.#openUntil - this.#now()
    if (left > 0) return left
    if (this.#probing) return this.#options.openMs
    this.#probing = true
    return 0
  }

  success (): void {
    this.#failures = 0
    this.#probing = false
  }

  failure (): void {
    this.#failures++
    this.#probing = false
    if (this.#failures >= this.#options.failureThreshold) this.#openUntil = this.#now() + this.#options.openMs
  }

  get consecutiveFailures (): number { return this.#failures }
  get state (): 'closed' | 'open' | 'half-open' {
    if (this.#failures < this.#options.failureThreshold) return 'closed'
    return this.#openUntil > this.#now() ? 'open' : 'half-open'
  }
}
