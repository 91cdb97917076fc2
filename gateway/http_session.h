// One HTTP/1.1 connection of presence-rest.
#ifndef PRESENCE_GATEWAY_HTTP_SESSION_H_
#define PRESENCE_GATEWAY_HTTP_SESSION_H_

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/core.hpp"
#include "gateway/metrics.h"
#include "gateway/responses.h"

namespace presence::rest {

class HttpSession;

// Receives each complete request of a session, on the I/O thread.
class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  virtual void Handle(const std::shared_ptr<HttpSession>& session,
                      Request request) = 0;
};

struct HttpLimits {
  // The longest a client may take to send one request.
  absl::Duration request_timeout = absl::Seconds(30);
  // The request line and headers; more is answered 431.
  size_t max_header_bytes = 8 * 1024;
  // A request body; more is answered 413.
  size_t max_body_bytes = 16 * 1024;
};

// Reads requests one at a time (keep-alive) and writes each answer before
// reading the next. Requests it cannot take are answered here and the
// connection closed: 431 (headers too large), 413 (body too large), 400 (a
// Transfer-Encoding whose final coding is not chunked, or a malformed
// request), 501 (a transfer coding other than chunked). I/O thread only.
class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  // `handler` and `metrics` must outlive the session.
  HttpSession(boost::asio::ip::tcp::socket socket, RequestHandler* handler,
              GatewayMetrics* metrics, const HttpLimits& limits);

  void Read();

  // For the answer to the current request: its route in the request
  // metrics, and headers every answer gets (CORS).
  void SetRoute(const char* route) { route_ = route; }
  void AddHeader(http::field name, std::string value) {
    headers_.emplace_back(name, std::move(value));
  }
  // Headers added with AddHeader, as HTTP lines (for an event stream).
  std::string HeaderLines() const;

  void Reply(Response response);

  // Hands the connection to an event stream; this session ends.
  boost::asio::ip::tcp::socket TakeSocket();

 private:
  void OnHeader(boost::beast::error_code error);
  void OnRead(boost::beast::error_code error);
  void Refuse(http::status status, absl::string_view message);
  void Close();
  void Linger();
  void Drain();

  RequestHandler* const handler_;
  GatewayMetrics* const metrics_;
  const HttpLimits limits_;
  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool keep_alive_ = true;
  // After a refusal: the client may still be sending what we refused.
  bool linger_ = false;
  const char* route_ = "unknown";
  std::vector<std::pair<http::field, std::string>> headers_;
};

}  // namespace presence::rest

#endif  // PRESENCE_GATEWAY_HTTP_SESSION_H_
