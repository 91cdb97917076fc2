#ifndef PRESENCE_SERVICE_CUSTOM_STATUS_TEXT_H_
#define PRESENCE_SERVICE_CUSTOM_STATUS_TEXT_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace presence {

// A custom status's text: at most this many characters (Unicode code
// points, as a person counts them closer than bytes).
inline constexpr size_t kMaxStatusTextChars = 100;
// A short code's name, between the colons.
inline constexpr size_t kMaxEmojiShortCodeChars = 64;

// INVALID_ARGUMENT naming `field`, or OK: valid UTF-8, at most
// kMaxStatusTextChars code points, no control characters (a status is one
// line).
absl::Status ValidateStatusText(absl::string_view text,
                                absl::string_view field);

// INVALID_ARGUMENT naming `field`, or OK: a short code such as ":coffee:"
// (":", 1 to 64 of [a-z0-9_+-], ":"), or exactly one grapheme cluster
// (ICU's segmentation: a flag, a ZWJ family, a skin-toned hand and a keycap
// are each one) that is an emoji (Extended_Pictographic, a regional
// indicator pair, or a keycap sequence).
absl::Status ValidateEmoji(absl::string_view emoji, absl::string_view field);

}  // namespace presence

#endif  // PRESENCE_SERVICE_CUSTOM_STATUS_TEXT_H_
