// Browsers' `text/event-stream` connections, fed by the fan-out.
#ifndef PRESENCE_GATEWAY_EVENT_STREAM_H_
#define PRESENCE_GATEWAY_EVENT_STREAM_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "boost/asio/ip/tcp.hpp"
#include "gateway/fanout.h"
#include "gateway/metrics.h"

namespace presence::rest {

class EventStream;

// The open event streams of the server. I/O thread only.
class EventStreams {
 public:
  // `fanout` and `metrics` must outlive this. `queue_limit`: events queued
  // for one slow browser before they are dropped for one fresh snapshot.
  EventStreams(PresenceFanout* fanout, GatewayMetrics* metrics,
               size_t queue_limit)
      : fanout_(fanout), metrics_(metrics), queue_limit_(queue_limit) {}
  EventStreams(const EventStreams&) = delete;
  EventStreams& operator=(const EventStreams&) = delete;

  // Answers 200 on `socket` with `extra_headers` (whole lines, each ending
  // in \r\n) and streams the events of `users` (empty: everyone).
  void Open(boost::asio::ip::tcp::socket socket, std::string extra_headers,
            std::vector<int64_t> users);
  size_t size() const { return streams_.size(); }
  // Ends every stream (shutting down).
  void CloseAll();

 private:
  friend class EventStream;
  PresenceFanout* const fanout_;
  GatewayMetrics* const metrics_;
  const size_t queue_limit_;
  absl::flat_hash_set<EventStream*> streams_;
};

// One browser's stream: one write in flight. Holds no read buffer while
// idle: it waits for the socket to become readable, which for an event
// stream means the browser went away.
class EventStream : public SseSink,
                    public std::enable_shared_from_this<EventStream> {
 public:
  EventStream(EventStreams* streams, boost::asio::ip::tcp::socket socket);

  void Start(const std::string& extra_headers, std::vector<int64_t> users);
  void Send(const SseFrame& frame) override;
  void Close();

 private:
  void Resync();
  void MaybeWrite();
  void WaitForClose();

  EventStreams* const streams_;
  boost::asio::ip::tcp::socket socket_;
  bool closed_ = false;
  bool resync_pending_ = false;
  std::vector<SseFrame> queued_;
  std::vector<SseFrame> writing_;
  std::vector<boost::asio::const_buffer> buffers_;
};

}  // namespace presence::rest

#endif  // PRESENCE_GATEWAY_EVENT_STREAM_H_
