// Wire shapes of the Fly Machines API calls the sidecar makes (OpenAPI `Machine`,
// `fly.MachineConfig`, `CreateMachineRequest`, `WaitMachineResponse`), trimmed to the fields it
// reads or writes; everything else is carried through untouched as unknown.

/** `fly.MachineService`; the API answers `autostop` as true/false for "stop"/"off". */
export interface MachineService {
  readonly autostart?: boolean
  readonly autostop?: 'off' | 'stop' | 'suspend' | boolean
  readonly internal_port?: number
  readonly [key: string]: unknown
}

/** `fly.MachineGuest`. */
export interface MachineGuest {
  readonly cpu_kind?: string
  readonly cpus?: number
  readonly memory_mb?: number
  readonly [key: string]: unknown
}

/** `fly.MachineConfig`. */
export interface MachineConfig {
  readonly image?: string
  readonly env?: Readonly<Record<string, string>>
  readonly metadata?: Readonly<Record<string, string>>
  readonly guest?: MachineGuest
  readonly services?: readonly MachineService[]
  readonly checks?: Readonly<Record<string, unknown>>
  readonly [key: string]: unknown
}

/** `Machine` as list, get and create answer it. */
export interface Machine {
  readonly id: string
  readonly name?: string
  readonly state?: string
  readonly region?: string
  readonly instance_id?: string
  readonly private_ip?: string
  readonly created_at?: string
  readonly updated_at?: string
  readonly config?: MachineConfig
  readonly [key: string]: unknown
}

/** `CreateMachineRequest`. */
export interface CreateMachineRequest {
  readonly name?: string
  readonly region?: string
  readonly config: MachineConfig
}

/** `WaitMachineResponse`. */
export interface WaitMachineResponse {
  readonly ok?: boolean
  readonly state?: string
  readonly version?: string
  readonly event_id?: string
}

/** Metadata keys the sidecar stamps on the Machines it creates. */
export const METADATA_POOL = 'sidecar_pool'
/** A fresh id per create attempt: how a create answered 408/5xx is recognised in a later list. */
export const METADATA_CREATE_ID = 'sidecar_create_id'
