// capsnet serve: a web page where you draw a digit or upload a picture and
// steer its capsule, and the JSON API behind it: the library's serve::Server
// with the options of the command line, stopped by Ctrl-C or SIGTERM.

#include "commands.h"
#include "capsnet/runtime/process.h"

#include "capsnet/inference/inference.h"
#include "capsnet/serve/server.h"

#include <cstdlib>
#include <iostream>
#include <memory>
#include <tuple>

namespace capsnet::cli {

namespace {

struct ServeFlags {
  serve::ServerOptions server;
  bool insecure_no_token = false;
  ComputeFlags compute;
};

int run_serve(ServeFlags& flags) {
  auto& options = flags.server;
  if (options.token.empty()) {
    if (const char* env = std::getenv("CAPSNET_SERVE_TOKEN")) options.token = env;
  }
  serve::check_access(options, flags.insecure_no_token);
  StopSignals signals; // Ctrl-C and SIGTERM stop the server (the stopper thread below)
  std::tie(options.device, options.precision) = flags.compute.resolve();
  serve::Server server(Predictor::load(options.checkpoint, "capsnet serve"), options);
  std::cout << server.banner() << std::flush;
  const bool ok = server.run_until(signals.stop(), [&] {
    std::cerr << program_name() << ": " << StopSignals::name(signals.signal())
              << " received, stopping" << std::endl;
  });
  std::cout << "capsnet serve: stopped after " << server.answered() << " answers" << std::endl;
  return ok ? 0 : 1;
}

} // namespace

Runner add_serve_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "serve", "A web page to draw a digit or upload a picture and steer its capsule, and a "
               "JSON API (POST /api/predict, POST /api/reconstruct, GET /healthz, GET /metrics)");
  auto f = std::make_shared<ServeFlags>();
  auto& o = f->server;
  add_checkpoint_option(cmd, o.checkpoint);
  cmd->add_option("--host", o.host, "address to listen on (0.0.0.0: every interface)")
      ->capture_default_str();
  cmd->add_option("--port", o.port, "port to listen on (0: any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--max-batch", o.max_batch, "most waiting requests run as one batch")
      ->check(CLI::Range(int64_t(1), int64_t(4096)))
      ->capture_default_str();
  cmd->add_option("--max-queue", o.max_queue,
                  "most requests waiting for inference; beyond, 503 at once (0: no limit)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20))
      ->capture_default_str();
  cmd->add_option("--max-connections", o.max_connections,
                  "most open connections, each on a thread of its own; beyond, 503 at once")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  cmd->add_option("--max-client-connections", o.max_client_connections,
                  "most connections one client address may have open; beyond, 503 at once")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  cmd->add_option("--token", o.token,
                  "every /api/* and /metrics request must carry 'Authorization: Bearer TOKEN' "
                  "(CAPSNET_SERVE_TOKEN: the same, out of the process list); the page takes it "
                  "from its address's #token=...");
  cmd->add_flag("--insecure-no-token", f->insecure_no_token,
                "serve a non-loopback --host without a token");
  cmd->add_option("--tls-cert", o.tls_cert, "PEM certificate: serve HTTPS (with --tls-key)");
  cmd->add_option("--tls-key", o.tls_key, "PEM private key of --tls-cert");
  cmd->add_option("--access-log", o.access_log,
                  "append one line per answered request to this file: client, method, path, "
                  "status, milliseconds, inference batch size");
  cmd->add_option("--max-decode-megapixels", o.decode_megapixels,
                  "most megapixels of uploaded pictures decoded at once (about 6 bytes of memory "
                  "each); beyond, 503 at once, and a picture larger than all of it 413")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  cmd->add_option("--timeout", o.timeout,
                  "seconds a connection may take to send a request, or stay idle between two")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  f->compute.add_to(cmd);

  return [f]() { return run_serve(*f); };
}

} // namespace capsnet::cli
