// JSON bodies whose user ids stay exact. protobuf's JSON printer writes a
// Struct's numbers as doubles, which cannot hold every int64: 2^53 + 1 would
// come back as 2^53 (another user), and 2^62 + 1 as 4.6116860184273879e+18.
// Ids are therefore written as decimal digits, and everything else (strings
// that need escaping) still by protobuf.
#ifndef PRESENCE_GATEWAY_JSON_H_
#define PRESENCE_GATEWAY_JSON_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "google/protobuf/struct.pb.h"

namespace presence::rest {

// `[1,5,12]`: exact decimal digits.
std::string JsonIdList(absl::Span<const int64_t> ids);

// The JSON object of `object`, with `raw` members first: each a key (a
// plain identifier, written as is) and a value that is already JSON, such
// as JsonIdList() or the digits of one id.
std::string JsonObject(
    const google::protobuf::Struct& object,
    std::initializer_list<std::pair<absl::string_view, absl::string_view>> raw =
        {});

}  // namespace presence::rest

#endif  // PRESENCE_GATEWAY_JSON_H_
