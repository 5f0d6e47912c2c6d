#include "capsnet/serve/server.h"

#include "capsnet/io/enum_names.h"
#include "capsnet/serve/api.h"
#include "capsnet/serve/guard.h"
#include "capsnet/serve/metrics.h"

#include "capsnet_page.h"

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <iomanip>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace capsnet::serve {

namespace {

void send_json(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

// Runs `handler`, turning what it throws into a JSON error reply.
// A 503 (the server is too busy now) says when to come back.
template <typename F>
httplib::Server::Handler guarded(F handler, ServeMetrics& metrics) {
  return [handler, &metrics](const httplib::Request& req, httplib::Response& res) {
    try {
      handler(req, res);
    } catch (const ApiError& e) {
      if (e.status == 503) {
        metrics.refused(e.refusal.empty() ? "busy" : e.refusal);
        res.set_header("Retry-After", "1");
      }
      send_json(res, e.status, error_reply(e.status, e.what()));
    } catch (const std::exception& e) {
      send_json(res, 500, error_reply(500, std::string("internal error: ") + e.what()));
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
  ConnectionThreads(int max_connections, std::atomic<int64_t>& open, ConnectionLimiter& limiter,
                    ServeMetrics& metrics)
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
  ConnectionLimiter& limiter_;
  ServeMetrics& metrics_;
  std::mutex mutex_;
  std::condition_variable done_;
  int64_t running_ = 0;
};
thread_local bool ConnectionThreads::over_capacity = false;
thread_local std::string ConnectionThreads::client;

std::unique_ptr<httplib::Server> make_http_server(const ServerOptions& options) {
  if (options.tls_cert.empty()) return std::make_unique<httplib::Server>();
  for (const auto* path : {&options.tls_cert, &options.tls_key}) {
    if (!std::ifstream(*path)) throw std::invalid_argument(*path + ": cannot read it");
  }
  auto server =
      std::make_unique<httplib::SSLServer>(options.tls_cert.c_str(), options.tls_key.c_str());
  if (!server->is_valid()) {
    throw std::invalid_argument("--tls-cert " + options.tls_cert + " and --tls-key " +
                                options.tls_key + " are not a PEM certificate and its private key");
  }
  return server;
}

} // namespace

void check_access(const ServerOptions& options, bool insecure_no_token) {
  const auto& token = options.token;
  if (!token.empty() && token.size() < 16) {
    throw std::invalid_argument("the token is " + std::to_string(token.size()) +
                                " characters; use at least 16 (e.g. openssl rand -hex 16)");
  }
  if (token.find_first_of(" \t\r\n") != std::string::npos) {
    throw std::invalid_argument("the token must not contain spaces or line breaks");
  }
  if (token.empty() && !insecure_no_token && !is_loopback_host(options.host)) {
    throw std::invalid_argument(
        "--host " + options.host + " shares the server beyond this machine: give it a token "
        "(--token, or CAPSNET_SERVE_TOKEN to keep it out of the process list; e.g. "
        "openssl rand -hex 16), or --insecure-no-token to serve without one");
  }
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    throw std::invalid_argument("--tls-cert and --tls-key go together");
  }
}

// What the routes answer with: the model (through the batcher) and the
// server's counters.
struct Server::Impl {
  Impl(Predictor p, const ServerOptions& o)
      : options(o),
        predictor(std::move(p)),
        batcher(predictor, o.max_batch, o.max_queue, &metrics),
        decodes(o.decode_megapixels * 1000000),
        clients(o.max_connections, o.max_client_connections),
        http(make_http_server(o)) {}

  void configure();
  void add_gate();
  void add_logger();
  void add_routes();
  void bind_port();

  const ServerOptions options;
  Predictor predictor;
  ServeMetrics metrics;
  BatchingPredictor batcher;
  DecodeBudget decodes;
  int64_t classes = 0, dim = 0;
  std::atomic<int64_t> answered{0};
  std::atomic<int64_t> connections{0};
  ConnectionLimiter clients; // connections per client address, from their first request
  int listen_socket = -1;    // the listening socket, once bound
  int port = 0;
  std::unique_ptr<std::ofstream> access_log; // null: none
  std::mutex log_mutex;
  std::unique_ptr<httplib::Server> http;
};

// Threads, timeouts and socket options.
void Server::Impl::configure() {
  http->new_task_queue = [this] {
    return new ConnectionThreads(options.max_connections, connections, clients, metrics);
  };
  // httplib's default adds SO_REUSEPORT, with which a second server binds
  // a port already served and the two share its connections; refuse instead.
  http->set_socket_options([this](auto sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    listen_socket = int(sock);
  });
  // Headers and body go out in two writes; with Nagle's algorithm the body
  // would wait for the client's delayed ACK (40 ms a reply on Linux).
  http->set_tcp_nodelay(true);
  http->set_payload_max_length(kMaxBodyBytes);
  http->set_read_timeout(options.timeout, 0);
  http->set_write_timeout(options.timeout, 0);
  http->set_keep_alive_timeout(options.timeout);
  http->set_keep_alive_max_count(1000);
}

// Refusals before a route runs: a connection beyond --max-connections (503,
// Retry-After), and with a token, /api/* and /metrics without it (401, no
// detail). Runs once the request's head has arrived, before its body is read.
void Server::Impl::add_gate() {
  http->set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    request_batch = 0;
    request_started = std::chrono::steady_clock::now();
    // A connection is counted under its client's address at its first request.
    if (!ConnectionThreads::over_capacity && ConnectionThreads::client.empty()) {
      const auto address = req.remote_addr.empty() ? std::string("?") : req.remote_addr;
      if (clients.admit(address) == ConnectionLimiter::Verdict::kAdmitted) {
        ConnectionThreads::client = address;
      } else {
        metrics.refused("client_connections");
        res.set_header("Retry-After", "1");
        res.set_header("Connection", "close");
        send_json(res, 503, error_reply(503, "this address has too many connections open; "
                                             "close some or try again in a moment"));
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    if (ConnectionThreads::over_capacity) {
      res.set_header("Retry-After", "1");
      res.set_header("Connection", "close");
      send_json(res, 503, error_reply(503, "the server has too many connections; try again "
                                           "in a moment"));
      return httplib::Server::HandlerResponse::Handled;
    }
    const bool guarded_path = req.path.rfind("/api/", 0) == 0 || req.path == "/metrics";
    if (!options.token.empty() && guarded_path) {
      const auto token = bearer_token(req.get_header_value("Authorization"));
      if (!token || !tokens_equal(*token, options.token)) {
        metrics.refused("unauthorized");
        res.set_header("WWW-Authenticate", "Bearer");
        send_json(res, 401, error_reply(401, "unauthorized"));
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
}

// After every answer: the metrics, and with an access log one line.
void Server::Impl::add_logger() {
  http->set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    const auto path = metrics_path(req.path);
    // A request httplib could not parse never reached the gate: no start time.
    const bool parsed = !req.method.empty();
    const std::chrono::duration<double> seconds =
        std::chrono::steady_clock::now() - request_started;
    metrics.request(path, res.status, parsed ? seconds.count() : -1.0);
    if (access_log) {
      std::lock_guard<std::mutex> lock(log_mutex);
      *access_log << (req.remote_addr.empty() ? "-" : req.remote_addr) << ' '
                  << (parsed ? req.method : "-") << ' ' << path << ' ' << res.status << ' '
                  << std::fixed << std::setprecision(1) << (parsed ? 1000 * seconds.count() : 0.0)
                  << " ms batch " << request_batch << '\n'
                  << std::flush;
    }
  });
}

// The page, the health check and the API.
void Server::Impl::add_routes() {
  http->Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kPage, "text/html; charset=utf-8");
  });
  http->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.render({batcher.queue_depth(), connections.load(), resident_bytes()}),
                    "text/plain; version=0.0.4; charset=utf-8");
  });
  http->Get("/healthz", guarded([this](const httplib::Request&, httplib::Response& res) {
              const auto stats = batcher.stats();
              auto health = model_info(batcher.predictor());
              health.update({{"status", "ok"},
                             {"checkpoint", options.checkpoint},
                             {"precision", enum_name(options.precision)},
                             {"device", options.device.str()},
                             {"answered", answered.load()},
                             {"batches", stats.batches},
                             {"batched_images", stats.images},
                             {"largest_batch", stats.largest}});
              send_json(res, 200, health);
            }, metrics));
  http->Post("/api/predict", guarded([this](const httplib::Request& req, httplib::Response& res) {
               const auto& served = batcher.predictor();
               const auto input = parse_predict_body(
                   req.body, req.get_header_value("Content-Type"), served, &decodes);
               const auto result = batcher.classify(input, &request_batch);
               send_json(res, 200, predict_reply(result, input, served.shape()));
               ++answered;
             }, metrics));
  http->Post("/api/reconstruct",
             guarded([this](const httplib::Request& req, httplib::Response& res) {
               const auto request = parse_reconstruct_body(
                   req.body, req.get_header_value("Content-Type"), classes, dim);
               auto capsules = at::zeros({1, classes, dim});
               capsules[0][request.capsule].copy_(at::tensor(request.vector));
               const auto image = batcher.reconstruct(capsules, request.capsule, &request_batch);
               if (request.png) {
                 res.set_content(reconstruct_png(image), "image/png");
               } else {
                 send_json(res, 200, reconstruct_reply(request.capsule, image));
               }
               ++answered;
             }, metrics));
  // Errors httplib answers itself (404, 413, 408, ...) get a JSON body too.
  http->set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty()) send_json(res, res.status, error_reply(res.status, reason(res.status)));
  });
}

// The port bound (port 0: the kernel's choice); throws when none can be.
void Server::Impl::bind_port() {
  port = options.port;
  if (port == 0) {
    port = http->bind_to_any_port(options.host);
  } else if (!http->bind_to_port(options.host, port)) {
    port = -1;
  }
  if (port <= 0) {
    throw std::invalid_argument("cannot listen on " + options.host + ":" +
                                std::to_string(options.port) +
                                " (in use, not an address of this machine, or not allowed); "
                                "give another --port or --host");
  }
  // httplib listens with a backlog of 5: a burst of connections beyond it
  // would wait for the kernel's SYN retries (a second or more), whoever sent
  // them. Listening again on the bound socket only raises the backlog.
  if (listen_socket >= 0) ::listen(listen_socket, SOMAXCONN);
}

Server::Server(Predictor predictor, const ServerOptions& options) {
  if (options.decode_megapixels <= 0) {
    throw std::invalid_argument("--max-decode-megapixels must be positive");
  }
  predictor.to(options.device);
  predictor.model()->set_precision(options.precision);
  impl_ = std::make_unique<Impl>(std::move(predictor), options);
  const auto sizes = impl_->predictor.sizes();
  impl_->classes = sizes.num_classes;
  impl_->dim = sizes.capsule_dim;
  if (!options.access_log.empty()) {
    impl_->access_log = std::make_unique<std::ofstream>(options.access_log, std::ios::app);
    if (!*impl_->access_log) {
      throw std::invalid_argument(options.access_log + ": cannot write the access log");
    }
  }
  impl_->configure();
  impl_->add_gate();
  impl_->add_routes();
  impl_->add_logger();
  impl_->bind_port();
}

Server::~Server() = default;

int Server::port() const { return impl_->port; }

const Predictor& Server::predictor() const { return impl_->predictor; }

bool Server::run() { return impl_->http->listen_after_bind(); }

void Server::stop() { impl_->http->stop(); }

bool Server::run_until(const std::atomic<bool>& stop, const std::function<void()>& on_stop) {
  std::atomic<bool> done{false};
  std::thread stopper([&] {
    while (!done) {
      if (stop) {
        if (on_stop) on_stop();
        this->stop();
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  const bool ok = run();
  done = true;
  stopper.join();
  return ok;
}

std::string Server::banner() const {
  const auto& o = impl_->options;
  const auto model = impl_->predictor.sizes();
  const auto host = o.host.find(':') != std::string::npos ? "[" + o.host + "]" : o.host;
  std::ostringstream out;
  out << "capsnet serve: listening on " << (o.tls_cert.empty() ? "http" : "https") << "://"
      << host << ":" << impl_->port << "/" << (o.token.empty() ? "" : "#token=...") << " ("
      << o.checkpoint << ", " << model.image_size << "x" << model.image_size << " inputs of "
      << model.in_channels << " channel" << (model.in_channels == 1 ? "" : "s") << ", "
      << enum_name(o.precision) << " on " << o.device.str() << "); Ctrl-C stops\n";
  if (!o.token.empty()) {
    out << "capsnet serve: the page: open the address above with #token=<your token> at its "
           "end; API clients send 'Authorization: Bearer <your token>'\n";
  }
  return out.str();
}

int64_t Server::answered() const { return impl_->answered.load(); }

} // namespace capsnet::serve
