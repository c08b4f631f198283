// Pure: this Machine's own record + a pool's config → the CreateMachineRequest of a pool Machine.
import type { PoolConfig } from '../config/types.ts'
import type { CreateMachineRequest, Machine, MachineConfig, MachineService } from './api-types.ts'
import { METADATA_CREATE_ID, METADATA_POOL } from './api-types.ts'

/**
 * Config keys copied as they are from this Machine: what the app needs to run the same way.
 * Not copied: `metadata` (flyctl's `fly_process_group`/`fly_release_*` would make `fly deploy`
 * manage, rewrite or destroy the pool Machine), `mounts` (a volume belongs to one Machine),
 * `auto_destroy`, `schedule`, `standbys`, and `size` (replaced by `guest`).
 */
const CLONED_KEYS = ['init', 'restart', 'stop_config', 'metrics', 'processes', 'dns', 'statics', 'files', 'containers', 'rootfs'] as const

export interface CloneOptions {
  readonly pool: PoolConfig
  /** This Machine's FLY_IMAGE_REF; the own record's config.image when unknown. */
  readonly image: string | undefined
  /** This Machine's region; the own record's when unknown. */
  readonly region: string | undefined
  /** A fresh unique id for this create attempt (stamped in metadata, part of the name). */
  readonly createId: string
}

/** The create request: a clone of `own` stamped as a Machine of `options.pool`. */
export function buildCreateRequest (own: Machine, options: CloneOptions): CreateMachineRequest {
  const source: MachineConfig = own.config ?? {}
  const { pool } = options
  const config: Record<string, unknown> = {}
  for (const key of CLONED_KEYS) {
    if (source[key] !== undefined) config[key] = structuredClone(source[key])
  }
  const image = options.image ?? source.image
  if (image !== undefined) config.image = image
  config.env = { ...source.env, ...pool.env, SIDECAR_POOL: pool.name }
  const guest = { ...source.guest, ...pool.guest }
  if (Object.keys(guest).length > 0) config.guest = guest
  if (source.services !== undefined) {
    config.services = source.services.map((service): MachineService => ({
      ...structuredClone(service),
      autostop: pool.autostop,
      autostart: true,
    }))
  }
  if (source.checks !== undefined) config.checks = structuredClone(source.checks)
  config.metadata = { [METADATA_POOL]: pool.name, [METADATA_CREATE_ID]: options.createId }
  const region = options.region ?? own.region
  return {
    name: `${pool.name}-${options.createId}`,
    ...(region === undefined ? {} : { region }),
    config,
  }
}
