# Puma's config as `rails new` generates it, with cluster mode from WEB_CONCURRENCY. Under
# fly-replay-sidecar PORT is app.url's port (8081), or Thruster's TARGET_PORT when Thruster runs
# in front of Puma.
threads_count = ENV.fetch("RAILS_MAX_THREADS", 3)
threads threads_count, threads_count

port ENV.fetch("PORT", 3000)

workers Integer(ENV.fetch("WEB_CONCURRENCY", 0))

plugin :tmp_restart

pidfile ENV["PIDFILE"] if ENV["PIDFILE"]
