#include "gateway/http_session.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace presence::rest {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

namespace {

// RFC 9112 section 6: the body's framing. Only chunked is decoded, and it
// must be the final coding, applied once.
std::optional<std::pair<http::status, std::string>> CheckTransferEncoding(
    const Request& request) {
  std::vector<std::string> values;
  auto [first, last] = request.equal_range(http::field::transfer_encoding);
  for (auto field = first; field != last; ++field) {
    values.emplace_back(field->value().data(), field->value().size());
  }
  if (values.empty()) return std::nullopt;
  const std::string joined = absl::StrJoin(values, ",");
  http::opt_token_list codings(joined);
  std::vector<std::string> list;
  if (http::validate_list(codings)) {
    for (auto coding : codings) {
      list.push_back(absl::AsciiStrToLower(
          absl::string_view(coding.data(), coding.size())));
    }
  }
  if (list.empty() || list.back() != "chunked") {
    // 6.3: with chunked not final the body's length cannot be known; the
    // answer is 400 and the connection is closed.
    return std::make_pair(
        http::status::bad_request,
        absl::StrCat("Transfer-Encoding '", joined,
                     "' is not understood: its final coding must be chunked "
                     "(RFC 9112 section 6.3); send Content-Length or "
                     "Transfer-Encoding: chunked"));
  }
  if (list.size() > 1) {
    if (std::count(list.begin(), list.end(), "chunked") > 1) {
      return std::make_pair(
          http::status::bad_request,
          absl::StrCat("Transfer-Encoding '", joined,
                       "' applies chunked more than once (RFC 9112 "
                       "section 6.1)"));
    }
    // 6.1: a transfer coding the server does not understand is 501.
    return std::make_pair(
        http::status::not_implemented,
        absl::StrCat("Transfer-Encoding '", joined,
                     "': presence-rest decodes no transfer coding but "
                     "chunked; send the body uncompressed"));
  }
  return std::nullopt;
}

}  // namespace

HttpSession::HttpSession(tcp::socket socket, RequestHandler* handler,
                         GatewayMetrics* metrics, const HttpLimits& limits)
    : handler_(handler),
      metrics_(metrics),
      limits_(limits),
      stream_(std::move(socket)) {}

void HttpSession::Read() {
  route_ = "unknown";
  headers_.clear();
  parser_.emplace();
  parser_->header_limit(static_cast<uint32_t>(limits_.max_header_bytes));
  parser_->body_limit(limits_.max_body_bytes);
  stream_.expires_after(absl::ToChronoNanoseconds(limits_.request_timeout));
  http::async_read_header(
      stream_, buffer_, *parser_,
      [self = shared_from_this()](beast::error_code error, size_t) {
        self->OnHeader(error);
      });
}

void HttpSession::OnHeader(beast::error_code error) {
  if (error) return OnRead(error);
  if (auto refused = CheckTransferEncoding(parser_->get())) {
    return Refuse(refused->first, refused->second);
  }
  http::async_read(
      stream_, buffer_, *parser_,
      [self = shared_from_this()](beast::error_code error, size_t) {
        self->OnRead(error);
      });
}

void HttpSession::OnRead(beast::error_code error) {
  if (error == http::error::header_limit) {
    return Refuse(http::status::request_header_fields_too_large,
                  absl::StrCat("request line and headers over ",
                               limits_.max_header_bytes, " bytes"));
  }
  if (error == http::error::body_limit) {
    return Refuse(
        http::status::payload_too_large,
        absl::StrCat("request body over ", limits_.max_body_bytes, " bytes"));
  }
  if (error &&
      error.category() ==
          boost::beast::http::make_error_code(http::error::header_limit)
              .category() &&
      error != http::error::end_of_stream &&
      error != http::error::partial_message) {
    return Refuse(http::status::bad_request,
                  absl::StrCat("malformed HTTP request: ", error.message()));
  }
  if (error) {
    // The client left, or took too long: nobody to answer.
    return Close();
  }
  Request request = parser_->release();
  keep_alive_ = request.keep_alive();
  handler_->Handle(shared_from_this(), std::move(request));
}

std::string HttpSession::HeaderLines() const {
  std::string lines;
  for (const auto& [name, value] : headers_) {
    const auto field_name = http::to_string(name);
    absl::StrAppend(&lines,
                    absl::string_view(field_name.data(), field_name.size()),
                    ": ", value, "\r\n");
  }
  return lines;
}

void HttpSession::Refuse(http::status status, absl::string_view message) {
  keep_alive_ = false;
  linger_ = true;
  Reply(ErrorResponse(status, message));
}

void HttpSession::Reply(Response response) {
  response.set(http::field::server, "presence-rest");
  for (const auto& [name, value] : headers_) response.set(name, value);
  response.keep_alive(keep_alive_);
  response.prepare_payload();
  metrics_->CountRequest(route_, response.result_int());
  auto owned = std::make_shared<Response>(std::move(response));
  stream_.expires_after(absl::ToChronoNanoseconds(limits_.request_timeout));
  http::async_write(
      stream_, *owned,
      [self = shared_from_this(), owned](beast::error_code error, size_t) {
        if (error) return self->Close();
        if (self->linger_) return self->Linger();
        if (!owned->keep_alive()) return self->Close();
        self->Read();
      });
}

tcp::socket HttpSession::TakeSocket() {
  stream_.expires_never();
  return stream_.release_socket();
}

void HttpSession::Close() {
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream_.close();
}

void HttpSession::Linger() {
  // Closing with unread bytes would send a reset, which can destroy the
  // answer before the client reads it: say we are done, then read and drop
  // what still comes, for a second at most.
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream_.expires_after(std::chrono::seconds(1));
  Drain();
}

void HttpSession::Drain() {
  buffer_.consume(buffer_.size());
  stream_.async_read_some(
      buffer_.prepare(4096),
      [self = shared_from_this()](beast::error_code error, size_t n) {
        if (error) return self->stream_.close();
        self->buffer_.commit(n);
        self->Drain();
      });
}

}  // namespace presence::rest
