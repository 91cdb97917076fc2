#include "gateway/event_stream.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/post.hpp"
#include "boost/asio/write.hpp"

namespace presence::rest {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

void EventStreams::Open(tcp::socket socket, std::string extra_headers,
                        std::vector<int64_t> users) {
  metrics_->CountRequest("presence_stream", 200);
  std::make_shared<EventStream>(this, std::move(socket))
      ->Start(extra_headers, std::move(users));
}

void EventStreams::CloseAll() {
  std::vector<EventStream*> streams(streams_.begin(), streams_.end());
  for (EventStream* stream : streams) stream->Close();
}

EventStream::EventStream(EventStreams* streams, tcp::socket socket)
    : streams_(streams), socket_(std::move(socket)) {}

void EventStream::Start(const std::string& extra_headers,
                        std::vector<int64_t> users) {
  streams_->streams_.insert(this);
  streams_->metrics_->StreamOpened();
  error_code ignored;
  socket_.non_blocking(true, ignored);  // for the drain in WaitForClose
  Send(std::make_shared<const std::string>(
      absl::StrCat("HTTP/1.1 200 OK\r\n"
                   "Content-Type: text/event-stream\r\n"
                   "Cache-Control: no-store\r\n"
                   "X-Accel-Buffering: no\r\n"
                   "Server: presence-rest\r\n",
                   extra_headers,
                   "\r\n"
                   "retry: 2000\n\n")));
  streams_->fanout_->Subscribe(this, std::move(users));
  WaitForClose();
}

void EventStream::Send(const SseFrame& frame) {
  if (closed_) return;
  if (queued_.size() >= streams_->queue_limit_ && !resync_pending_) {
    // Too slow: drop what waits and send one fresh snapshot instead.
    queued_.clear();
    resync_pending_ = true;
    asio::post(socket_.get_executor(),
               [self = shared_from_this()] { self->Resync(); });
    return;
  }
  if (resync_pending_) return;  // the snapshot will cover it
  queued_.push_back(frame);
  MaybeWrite();
}

void EventStream::Close() {
  if (closed_) return;
  closed_ = true;
  streams_->fanout_->Unsubscribe(this);
  streams_->streams_.erase(this);
  streams_->metrics_->StreamClosed();
  queued_.clear();
  error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
}

void EventStream::Resync() {
  resync_pending_ = false;
  if (closed_) return;
  SseFrame snapshot = streams_->fanout_->SnapshotFor(this);
  if (snapshot != nullptr) Send(snapshot);
}

void EventStream::MaybeWrite() {
  if (!writing_.empty() || queued_.empty()) return;
  writing_.swap(queued_);
  buffers_.clear();
  for (const SseFrame& frame : writing_) {
    buffers_.emplace_back(frame->data(), frame->size());
  }
  asio::async_write(socket_, buffers_,
                    [self = shared_from_this()](error_code error, size_t) {
                      self->writing_.clear();
                      if (error) {
                        self->Close();
                        return;
                      }
                      self->MaybeWrite();
                    });
}

void EventStream::WaitForClose() {
  socket_.async_wait(
      tcp::socket::wait_read, [self = shared_from_this()](error_code error) {
        if (error) {
          self->Close();
          return;
        }
        // Readable: the browser closed, or sent bytes an event stream does
        // not expect. Either way, drain and see which.
        char scratch[256];
        error_code read_error;
        size_t n = self->socket_.read_some(asio::buffer(scratch), read_error);
        if (read_error == asio::error::would_block) {
          self->WaitForClose();
          return;
        }
        if (read_error || n == 0) {
          self->Close();
          return;
        }
        self->WaitForClose();
      });
}

}  // namespace presence::rest
