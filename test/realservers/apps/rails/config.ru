# A Rack app under Puma for the real-servers suite, standing in for Rails (which Debian cannot
# install offline with its gems): the same server, config/puma.rb and process tree as
# `./bin/rails server`. Routes: / (hello), POST /echo (length and sha256 of the body),
# GET /bytes?n= (n random bytes, sha256 in x-sha256), GET /stream?n=&ms= (n chunks, ms apart,
# as ActionController::Live writes them), GET /env (the PORT and FLY_API_TOKEN it was given).
require "digest"
require "json"
require "securerandom"

class Chunks
  def initialize(n, ms)
    @n = n
    @ms = ms
  end

  def each
    @n.times do |i|
      sleep(@ms / 1000.0) if i > 0
      yield format("chunk %d %.3f\n", i, Time.now.to_f)
    end
  end
end

run lambda { |env|
  req = Rack::Request.new(env)
  case [req.request_method, req.path_info]
  when ["GET", "/"]
    [200, { "content-type" => "text/plain" }, ["hello from puma #{Puma::Const::PUMA_VERSION}"]]
  when ["POST", "/echo"]
    digest = Digest::SHA256.new
    bytes = 0
    while (chunk = req.body.read(65_536))
      digest << chunk
      bytes += chunk.bytesize
    end
    [200, { "content-type" => "application/json" }, [JSON.generate(bytes: bytes, sha256: digest.hexdigest)]]
  when ["GET", "/bytes"]
    body = SecureRandom.random_bytes(req.params.fetch("n", "0").to_i)
    [200, { "content-type" => "application/octet-stream", "x-sha256" => Digest::SHA256.hexdigest(body) }, [body]]
  when ["GET", "/stream"]
    [200, { "content-type" => "text/plain" }, Chunks.new(req.params.fetch("n", "5").to_i, req.params.fetch("ms", "100").to_i)]
  when ["GET", "/env"]
    [200, { "content-type" => "application/json" }, [JSON.generate(port: ENV["PORT"], token: ENV["FLY_API_TOKEN"], pid: Process.pid)]]
  else
    [404, { "content-type" => "text/plain" }, ["not found"]]
  end
}
