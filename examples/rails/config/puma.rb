# Puma's config as `rails new` generates it, with two changes for fly-replay-sidecar: Puma binds
# loopback only (only the sidecar, or Thruster, talks to it), and WEB_CONCURRENCY turns on
# cluster mode. PORT is app.url's port (8081), set by the sidecar, or Thruster's TARGET_PORT when
# Thruster runs in front of Puma.
threads_count = ENV.fetch("RAILS_MAX_THREADS", 3)
threads threads_count, threads_count

port ENV.fetch("PORT", 3000), "127.0.0.1"

workers Integer(ENV.fetch("WEB_CONCURRENCY", 0))

plugin :tmp_restart

pidfile ENV["PIDFILE"] if ENV["PIDFILE"]
