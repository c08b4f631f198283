// Types for the two prom-client files src/metrics.ts imports directly instead of the package's
// index, which also loads its Pushgateway (node:http, https and zlib) and cluster aggregation
// (node:cluster) that the sidecar never uses. They are the same objects the index exports.
declare module 'prom-client/lib/registry.js' {
  import { Registry } from 'prom-client'
  export default Registry
}
declare module 'prom-client/lib/defaultMetrics.js' {
  import { collectDefaultMetrics } from 'prom-client'
  export default collectDefaultMetrics
}
