# Rack app for puma (`puma -C puma.rb app.ru`; docs/src/recipes/puma.md; tests/real_programs.rs):
# GET /who -> {"pid", "peer", "peer_port"}.
require 'json'
run lambda { |env|
  if env['PATH_INFO'] == '/who'
    port = env['REMOTE_PORT'] # puma does not set it; read the socket
    io = env['puma.socket']
    port ||= (io.peeraddr[1] rescue nil) if io
    [200, { 'content-type' => 'application/json' },
     [JSON.generate(pid: Process.pid, peer: env['REMOTE_ADDR'], peer_port: port)]]
  else
    [200, { 'content-type' => 'text/plain' }, ["hello from #{Process.pid}\n"]]
  end
}
