// capsnet serve: a web page where you draw a digit or upload a picture and
// steer its capsule, and the JSON API behind it, over cpp-httplib. The API's
// parsing, replies and batching are in src/serve/api.cpp; this file is the
// HTTP around them.

#include "commands.h"
#include "process.h"

#include "capsnet/engine/inference.h"
#include "capsnet/engine/runtime.h"
#include "capsnet/serve/api.h"
#include "capsnet/serve/guard.h"
#include "capsnet/serve/metrics.h"

#include "capsnet_page.h"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <mutex>
#include <pthread.h>
#include <thread>

namespace capsnet::cli {

namespace {

struct ServeFlags {
  std::string checkpoint;
  std::string host = "127.0.0.1";
  int port = 8080;
  int64_t max_batch = 64;
  int64_t max_queue = 256;
  int max_connections = 512;
  int max_client_connections = 64;
  int timeout = 10;
  std::string token; // --token, or CAPSNET_SERVE_TOKEN
  bool insecure_no_token = false;
  std::string tls_cert, tls_key;
  std::string access_log;
  ComputeFlags compute;
};

void send_json(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

// Runs `handler`, turning what it throws into a JSON error reply.
// A 503 (the inference queue is full) says when to come back.
template <typename F>
httplib::Server::Handler guarded(F handler, serve::ServeMetrics& metrics) {
  return [handler, &metrics](const httplib::Request& req, httplib::Response& res) {
    try {
      handler(req, res);
    } catch (const serve::ApiError& e) {
      if (e.status == 503) {
        metrics.refused("queue_full");
        res.set_header("Retry-After", "1");
      }
      send_json(res, e.status, serve::error_reply(e.status, e.what()));
    } catch (const std::exception& e) {
      send_json(res, 500, serve::error_reply(500, std::string("internal error: ") + e.what()));
    }
  };
}

const char* reason(int status) {
  switch (status) {
    case 400: return "bad request";
    case 404: return "no such page; the API is POST /api/predict, POST /api/reconstruct, GET /healthz, GET /metrics";
    case 405: return "method not allowed";
    case 408: return "the request took too long to arrive";
    case 413: return "the body is too large";
    case 414: return "the URI is too long";
    case 415: return "unsupported media type";
    case 401: return "unauthorized";
    default: return status >= 500 ? "internal error" : "request refused";
  }
}

// What the routes answer with: the model (through the batcher) and the
// server's counters.
struct ServeState {
  const ServeFlags& flags;
  serve::BatchingPredictor& batcher;
  serve::ServeMetrics& metrics;
  int64_t classes, dim;
  Precision precision;
  c10::Device device;
  std::atomic<int64_t> answered{0};
  std::atomic<int64_t> connections{0};
  serve::ConnectionLimiter clients; // connections per client address, from their first request
  int listen_socket = -1;                    // the listening socket, once bound
  std::unique_ptr<std::ofstream> access_log; // --access-log FILE; null: none
  std::mutex log_mutex;
};

// The size of the inference batch the request on this thread ran in (0: none),
// for the access log, which httplib calls on the same thread after the answer.
thread_local int64_t request_batch = 0;
// When the request on this thread had its head read (the pre-routing handler).
thread_local std::chrono::steady_clock::time_point request_started;

// One thread per connection, started when it is accepted and ended when it
// closes: a client that is slow to send its request holds its own thread
// only, never the one another client needs (httplib's ThreadPool gives each
// connection one of a fixed number of threads: 8 stalled clients stopped
// the server). Beyond --max-connections a connection still gets a thread,
// which answers its request 503 at once; at twice that, accepting waits for
// a connection to close (new ones wait in the kernel's queue), so that a
// flood of stalled connections cannot grow threads and memory without bound.
class ConnectionThreads : public httplib::TaskQueue {
 public:
  ConnectionThreads(int max_connections, std::atomic<int64_t>& open,
                    serve::ConnectionLimiter& limiter, serve::ServeMetrics& metrics)
      : max_(max_connections), open_(open), limiter_(limiter), metrics_(metrics) {}

  void enqueue(std::function<void()> fn) override {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (running_ >= 2 * max_) metrics_.refused("accept_waited");
      done_.wait(lock, [this] { return running_ < 2 * max_; });
      ++running_;
    }
    std::thread([this, fn = std::move(fn)] {
      const bool over = open_.fetch_add(1) >= max_;
      over_capacity = over;
      if (over) metrics_.refused("server_connections");
      fn();
      if (!client.empty()) limiter_.release(client);
      client.clear();
      open_.fetch_sub(1);
      std::lock_guard<std::mutex> lock(mutex_);
      --running_;
      done_.notify_all();
    }).detach();
  }

  void shutdown() override {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return running_ == 0; });
  }

  /// Whether the connection of this thread came beyond --max-connections.
  static thread_local bool over_capacity;
  /// The client address the connection of this thread was counted under
  /// (empty until its first request), released when it closes.
  static thread_local std::string client;

 private:
  const int64_t max_;
  std::atomic<int64_t>& open_;
  serve::ConnectionLimiter& limiter_;
  serve::ServeMetrics& metrics_;
  std::mutex mutex_;
  std::condition_variable done_;
  int64_t running_ = 0;
};
thread_local bool ConnectionThreads::over_capacity = false;
thread_local std::string ConnectionThreads::client;

// Threads, timeouts and socket options.
void configure(httplib::Server& server, ServeState& st) {
  const auto& flags = st.flags;
  server.new_task_queue = [&st] {
    return new ConnectionThreads(st.flags.max_connections, st.connections, st.clients, st.metrics);
  };
  // httplib's default adds SO_REUSEPORT, with which a second server binds
  // a port already served and the two share its connections; refuse instead.
  server.set_socket_options([&st](auto sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    st.listen_socket = int(sock);
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
// Refusals before a route runs: a connection beyond --max-connections (503,
// Retry-After), and with a token, /api/* and /metrics without it (401, no
// detail). Runs once the request's head has arrived, before its body is read.
void add_gate(httplib::Server& server, ServeState& st) {
  server.set_pre_routing_handler([&st](const httplib::Request& req, httplib::Response& res) {
    request_batch = 0;
    request_started = std::chrono::steady_clock::now();
    // A connection is counted under its client's address at its first request.
    if (!ConnectionThreads::over_capacity && ConnectionThreads::client.empty()) {
      const auto address = req.remote_addr.empty() ? std::string("?") : req.remote_addr;
      if (st.clients.admit(address) == serve::ConnectionLimiter::Verdict::kAdmitted) {
        ConnectionThreads::client = address;
      } else {
        st.metrics.refused("client_connections");
        res.set_header("Retry-After", "1");
        res.set_header("Connection", "close");
        send_json(res, 503, serve::error_reply(503, "this address has too many connections open; "
                                                    "close some or try again in a moment"));
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    if (ConnectionThreads::over_capacity) {
      res.set_header("Retry-After", "1");
      res.set_header("Connection", "close");
      send_json(res, 503, serve::error_reply(503, "the server has too many connections; try again "
                                                  "in a moment"));
      return httplib::Server::HandlerResponse::Handled;
    }
    const bool guarded_path = req.path.rfind("/api/", 0) == 0 || req.path == "/metrics";
    if (!st.flags.token.empty() && guarded_path) {
      const auto token = serve::bearer_token(req.get_header_value("Authorization"));
      if (!token || !serve::tokens_equal(*token, st.flags.token)) {
        st.metrics.refused("unauthorized");
        res.set_header("WWW-Authenticate", "Bearer");
        send_json(res, 401, serve::error_reply(401, "unauthorized"));
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
}

// After every answer: the metrics, and with --access-log one line.
void add_logger(httplib::Server& server, ServeState& st) {
  server.set_logger([&st](const httplib::Request& req, const httplib::Response& res) {
    const auto path = serve::metrics_path(req.path);
    // A request httplib could not parse never reached the gate: no start time.
    const bool parsed = !req.method.empty();
    const std::chrono::duration<double> seconds =
        std::chrono::steady_clock::now() - request_started;
    st.metrics.request(path, res.status, parsed ? seconds.count() : -1.0);
    if (st.access_log) {
      std::lock_guard<std::mutex> lock(st.log_mutex);
      *st.access_log << (req.remote_addr.empty() ? "-" : req.remote_addr) << ' '
                     << (parsed ? req.method : "-") << ' ' << path << ' ' << res.status << ' '
                     << std::fixed << std::setprecision(1) << (parsed ? 1000 * seconds.count() : 0.0)
                     << " ms batch " << request_batch << '\n'
                     << std::flush;
    }
  });
}

void add_routes(httplib::Server& server, ServeState& st) {
  server.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(serve::kPage, "text/html; charset=utf-8");
  });
  server.Get("/metrics", [&st](const httplib::Request&, httplib::Response& res) {
    res.set_content(st.metrics.render({st.batcher.queue_depth(), st.connections.load(),
                                       serve::resident_bytes()}),
                    "text/plain; version=0.0.4; charset=utf-8");
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
             }, st.metrics));
  server.Post("/api/predict", guarded([&st](const httplib::Request& req, httplib::Response& res) {
                const auto& predictor = st.batcher.predictor();
                const auto input = serve::parse_predict_body(
                    req.body, req.get_header_value("Content-Type"), predictor);
                const auto result = st.batcher.classify(input, &request_batch);
                send_json(res, 200, serve::predict_reply(result, input, predictor.shape()));
                ++st.answered;
              }, st.metrics));
  server.Post("/api/reconstruct",
              guarded([&st](const httplib::Request& req, httplib::Response& res) {
                const auto request = serve::parse_reconstruct_body(
                    req.body, req.get_header_value("Content-Type"), st.classes, st.dim);
                auto capsules = at::zeros({1, st.classes, st.dim});
                capsules[0][request.capsule].copy_(at::tensor(request.vector));
                const auto image = st.batcher.reconstruct(capsules, request.capsule, &request_batch);
                if (request.png) {
                  res.set_content(serve::reconstruct_png(image), "image/png");
                } else {
                  send_json(res, 200, serve::reconstruct_reply(request.capsule, image));
                }
                ++st.answered;
              }, st.metrics));
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

// The token from --token or CAPSNET_SERVE_TOKEN; refuses to share the server
// beyond this machine without one, unless told to.
void check_access(ServeFlags& flags) {
  if (flags.token.empty()) {
    if (const char* env = std::getenv("CAPSNET_SERVE_TOKEN")) flags.token = env;
  }
  if (!flags.token.empty() && flags.token.size() < 16) {
    throw std::invalid_argument("the token is " + std::to_string(flags.token.size()) +
                                " characters; use at least 16 (e.g. openssl rand -hex 16)");
  }
  if (flags.token.find_first_of(" \t\r\n") != std::string::npos) {
    throw std::invalid_argument("the token must not contain spaces or line breaks");
  }
  if (flags.token.empty() && !flags.insecure_no_token && !serve::is_loopback_host(flags.host)) {
    throw std::invalid_argument(
        "--host " + flags.host + " shares the server beyond this machine: give it a token "
        "(--token, or CAPSNET_SERVE_TOKEN to keep it out of the process list; e.g. "
        "openssl rand -hex 16), or --insecure-no-token to serve without one");
  }
  if (flags.tls_cert.empty() != flags.tls_key.empty()) {
    throw std::invalid_argument("--tls-cert and --tls-key go together");
  }
}

std::unique_ptr<httplib::Server> make_server(const ServeFlags& flags) {
  if (flags.tls_cert.empty()) return std::make_unique<httplib::Server>();
  for (const auto* path : {&flags.tls_cert, &flags.tls_key}) {
    if (!std::ifstream(*path)) throw std::invalid_argument(*path + ": cannot read it");
  }
  auto server = std::make_unique<httplib::SSLServer>(flags.tls_cert.c_str(), flags.tls_key.c_str());
  if (!server->is_valid()) {
    throw std::invalid_argument("--tls-cert " + flags.tls_cert + " and --tls-key " +
                                flags.tls_key + " are not a PEM certificate and its private key");
  }
  return server;
}

int run_serve(ServeFlags& flags) {
  check_access(flags);
  StopSignals signals; // Ctrl-C and SIGTERM stop the server (the stopper thread below)
  const auto [device, precision] = flags.compute.resolve();
  auto predictor = Predictor::load(flags.checkpoint, "capsnet serve");
  predictor.to(device);
  predictor.model()->set_precision(precision);
  const auto config = predictor.sizes();
  serve::ServeMetrics metrics;
  serve::BatchingPredictor batcher(predictor, flags.max_batch, flags.max_queue, &metrics);
  ServeState st{flags, batcher, metrics, config.num_classes, config.capsule_dim, precision, device,
                /*answered=*/{}, /*connections=*/{},
                /*clients=*/{flags.max_connections, flags.max_client_connections}};
  if (!flags.access_log.empty()) {
    st.access_log = std::make_unique<std::ofstream>(flags.access_log, std::ios::app);
    if (!*st.access_log) throw std::invalid_argument(flags.access_log + ": cannot write the access log");
  }
  auto server_ptr = make_server(flags);
  auto& server = *server_ptr;
  configure(server, st);
  add_gate(server, st);
  add_routes(server, st);
  add_logger(server, st);
  const int port = bind_port(server, flags);
  // httplib listens with a backlog of 5: a burst of connections beyond it
  // would wait for the kernel's SYN retries (a second or more), whoever sent
  // them. Listening again on the bound socket only raises the backlog.
  if (st.listen_socket >= 0) ::listen(st.listen_socket, SOMAXCONN);
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
  const std::string scheme = flags.tls_cert.empty() ? "http" : "https";
  std::printf("capsnet serve: listening on %s://%s:%d/%s (%s, %ldx%ld inputs of %ld channel%s, "
              "%s on %s); Ctrl-C stops\n",
              scheme.c_str(), host.c_str(), port, flags.token.empty() ? "" : "#token=...",
              flags.checkpoint.c_str(), static_cast<long>(config.image_size),
              static_cast<long>(config.image_size), static_cast<long>(config.in_channels),
              config.in_channels == 1 ? "" : "s", enum_name(precision).c_str(),
              device.str().c_str());
  if (!flags.token.empty()) {
    std::printf("capsnet serve: the page: open the address above with #token=<your token> at "
                "its end; API clients send 'Authorization: Bearer <your token>'\n");
  }
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
               "JSON API (POST /api/predict, POST /api/reconstruct, GET /healthz, GET /metrics)");
  auto f = std::make_shared<ServeFlags>();
  add_checkpoint_option(cmd, f->checkpoint);
  cmd->add_option("--host", f->host, "address to listen on (0.0.0.0: every interface)")
      ->capture_default_str();
  cmd->add_option("--port", f->port, "port to listen on (0: any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--max-batch", f->max_batch, "most waiting requests run as one batch")
      ->check(CLI::Range(int64_t(1), int64_t(4096)))
      ->capture_default_str();
  cmd->add_option("--max-queue", f->max_queue,
                  "most requests waiting for inference; beyond, 503 at once (0: no limit)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20))
      ->capture_default_str();
  cmd->add_option("--max-connections", f->max_connections,
                  "most open connections, each on a thread of its own; beyond, 503 at once")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  cmd->add_option("--max-client-connections", f->max_client_connections,
                  "most connections one client address may have open; beyond, 503 at once")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  cmd->add_option("--token", f->token,
                  "every /api/* and /metrics request must carry 'Authorization: Bearer TOKEN' "
                  "(CAPSNET_SERVE_TOKEN: the same, out of the process list); the page takes it "
                  "from its address's #token=...");
  cmd->add_flag("--insecure-no-token", f->insecure_no_token,
                "serve a non-loopback --host without a token");
  cmd->add_option("--tls-cert", f->tls_cert, "PEM certificate: serve HTTPS (with --tls-key)");
  cmd->add_option("--tls-key", f->tls_key, "PEM private key of --tls-cert");
  cmd->add_option("--access-log", f->access_log,
                  "append one line per answered request to this file: client, method, path, "
                  "status, milliseconds, inference batch size");
  cmd->add_option("--timeout", f->timeout,
                  "seconds a connection may take to send a request, or stay idle between two")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  f->compute.add_to(cmd);

  return [f]() { return run_serve(*f); };
}

} // namespace capsnet::cli
