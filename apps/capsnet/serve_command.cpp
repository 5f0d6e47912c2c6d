// capsnet serve: a web page where you draw a digit or upload a picture and
// steer its capsule, and the JSON API behind it, over cpp-httplib. The API's
// parsing, replies and batching are in src/serve/api.cpp; this file is the
// HTTP around them.

#include "commands.h"
#include "process.h"

#include "capsnet/engine/inference.h"
#include "capsnet/engine/runtime.h"
#include "capsnet/serve/api.h"

#include "capsnet_page.h"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>
#include <pthread.h>
#include <thread>

namespace capsnet::cli {

namespace {

struct ServeFlags {
  std::string checkpoint;
  std::string host = "127.0.0.1";
  int port = 8080;
  int http_threads = 8;
  int64_t max_batch = 64;
  int timeout = 10;
  ComputeFlags compute;
};

void send_json(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

// Runs `handler`, turning what it throws into a JSON error reply.
template <typename F>
httplib::Server::Handler guarded(F handler) {
  return [handler](const httplib::Request& req, httplib::Response& res) {
    try {
      handler(req, res);
    } catch (const serve::ApiError& e) {
      send_json(res, e.status, serve::error_reply(e.status, e.what()));
    } catch (const std::exception& e) {
      send_json(res, 500, serve::error_reply(500, std::string("internal error: ") + e.what()));
    }
  };
}

const char* reason(int status) {
  switch (status) {
    case 400: return "bad request";
    case 404: return "no such page; the API is POST /api/predict, POST /api/reconstruct, GET /healthz";
    case 405: return "method not allowed";
    case 408: return "the request took too long to arrive";
    case 413: return "the body is too large";
    case 414: return "the URI is too long";
    case 415: return "unsupported media type";
    default: return status >= 500 ? "internal error" : "request refused";
  }
}

// What the routes answer with: the model (through the batcher) and the
// server's counters.
struct ServeState {
  const ServeFlags& flags;
  serve::BatchingPredictor& batcher;
  int64_t classes, dim;
  Precision precision;
  c10::Device device;
  std::atomic<int64_t> answered{0};
};

// Threads, timeouts and socket options.
void configure(httplib::Server& server, const ServeFlags& flags) {
  const int http_threads = flags.http_threads;
  server.new_task_queue = [http_threads] { return new httplib::ThreadPool(size_t(http_threads)); };
  // httplib's default adds SO_REUSEPORT, with which a second server binds
  // a port already served and the two share its connections; refuse instead.
  server.set_socket_options([](auto sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  // Headers and body go out in two writes; with Nagle's algorithm the body
  // would wait for the client's delayed ACK (40 ms a reply on Linux).
  server.set_tcp_nodelay(true);
  server.set_payload_max_length(serve::kMaxBodyBytes);
  server.set_read_timeout(flags.timeout, 0);
  server.set_write_timeout(flags.timeout, 0);
  server.set_keep_alive_timeout(flags.timeout);
  server.set_keep_alive_max_count(1000);
}

// The page, the health check and the API.
void add_routes(httplib::Server& server, ServeState& st) {
  server.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(serve::kPage, "text/html; charset=utf-8");
  });
  server.Get("/healthz", guarded([&st](const httplib::Request&, httplib::Response& res) {
               const auto stats = st.batcher.stats();
               auto health = serve::model_info(st.batcher.predictor());
               health.update({{"status", "ok"},
                              {"checkpoint", st.flags.checkpoint},
                              {"precision", enum_name(st.precision)},
                              {"device", st.device.str()},
                              {"answered", st.answered.load()},
                              {"batches", stats.batches},
                              {"batched_images", stats.images},
                              {"largest_batch", stats.largest}});
               send_json(res, 200, health);
             }));
  server.Post("/api/predict", guarded([&st](const httplib::Request& req, httplib::Response& res) {
                const auto& predictor = st.batcher.predictor();
                const auto input = serve::parse_predict_body(
                    req.body, req.get_header_value("Content-Type"), predictor);
                const auto result = st.batcher.classify(input);
                send_json(res, 200, serve::predict_reply(result, input, predictor.shape()));
                ++st.answered;
              }));
  server.Post("/api/reconstruct",
              guarded([&st](const httplib::Request& req, httplib::Response& res) {
                const auto request = serve::parse_reconstruct_body(
                    req.body, req.get_header_value("Content-Type"), st.classes, st.dim);
                auto capsules = at::zeros({1, st.classes, st.dim});
                capsules[0][request.capsule].copy_(at::tensor(request.vector));
                const auto image = st.batcher.reconstruct(capsules, request.capsule);
                if (request.png) {
                  res.set_content(serve::reconstruct_png(image), "image/png");
                } else {
                  send_json(res, 200, serve::reconstruct_reply(request.capsule, image));
                }
                ++st.answered;
              }));
  // Errors httplib answers itself (404, 413, 408, ...) get a JSON body too.
  server.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty()) send_json(res, res.status, serve::error_reply(res.status, reason(res.status)));
  });
}

// The port bound (--port 0: the kernel's choice); throws when none can be.
int bind_port(httplib::Server& server, const ServeFlags& flags) {
  int port = flags.port;
  if (port == 0) {
    port = server.bind_to_any_port(flags.host);
  } else if (!server.bind_to_port(flags.host, port)) {
    port = -1;
  }
  if (port <= 0) {
    throw std::invalid_argument("cannot listen on " + flags.host + ":" + std::to_string(flags.port) +
                                " (in use, not an address of this machine, or not allowed); "
                                "give another --port or --host");
  }
  return port;
}

int run_serve(const ServeFlags& flags) {
  StopSignals signals; // Ctrl-C and SIGTERM stop the server (the stopper thread below)
  const auto [device, precision] = flags.compute.resolve();
  auto predictor = Predictor::load(flags.checkpoint, "capsnet serve");
  predictor.to(device);
  predictor.model()->set_precision(precision);
  const auto config = predictor.sizes();
  serve::BatchingPredictor batcher(predictor, flags.max_batch);
  ServeState st{flags, batcher, config.num_classes, config.capsule_dim, precision, device};
  httplib::Server server;
  configure(server, flags);
  add_routes(server, st);
  const int port = bind_port(server, flags);
  std::atomic<bool> done{false};
  std::thread stopper([&] {
    while (!done) {
      if (signals.stop()) {
        std::fprintf(stderr, "%s: %s received, stopping\n", program_name().c_str(),
                     StopSignals::name(signals.signal()));
        server.stop();
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  const auto host = flags.host.find(':') != std::string::npos ? "[" + flags.host + "]" : flags.host;
  std::printf("capsnet serve: listening on http://%s:%d/ (%s, %ldx%ld inputs of %ld channel%s, "
              "%s on %s); Ctrl-C stops\n",
              host.c_str(), port, flags.checkpoint.c_str(), static_cast<long>(config.image_size),
              static_cast<long>(config.image_size), static_cast<long>(config.in_channels),
              config.in_channels == 1 ? "" : "s", enum_name(precision).c_str(),
              device.str().c_str());
  std::fflush(stdout);
  const bool ok = server.listen_after_bind();
  done = true;
  stopper.join();
  std::printf("capsnet serve: stopped after %ld answers\n", static_cast<long>(st.answered.load()));
  return ok ? 0 : 1;
}

} // namespace

Runner add_serve_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "serve", "A web page to draw a digit or upload a picture and steer its capsule, and a "
               "JSON API (POST /api/predict, POST /api/reconstruct, GET /healthz)");
  auto f = std::make_shared<ServeFlags>();
  add_checkpoint_option(cmd, f->checkpoint);
  cmd->add_option("--host", f->host, "address to listen on (0.0.0.0: every interface)")
      ->capture_default_str();
  cmd->add_option("--port", f->port, "port to listen on (0: any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--http-threads", f->http_threads, "threads answering HTTP connections")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_option("--max-batch", f->max_batch, "most waiting requests run as one batch")
      ->check(CLI::Range(int64_t(1), int64_t(4096)))
      ->capture_default_str();
  cmd->add_option("--timeout", f->timeout,
                  "seconds a connection may take to send a request, or stay idle between two")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  f->compute.add_to(cmd);

  return [f]() { return run_serve(*f); };
}

} // namespace capsnet::cli
