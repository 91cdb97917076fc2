#include "service/custom_status_text.h"

#include <unicode/brkiter.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/utf8.h>

#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace presence {
namespace {

constexpr UChar32 kCombiningKeycap = 0x20E3;

// The code points of valid UTF-8, or false.
bool DecodeUtf8(absl::string_view s, std::u32string* out) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(s.data());
  const auto length = static_cast<int32_t>(s.size());
  for (int32_t i = 0; i < length;) {
    UChar32 c;
    U8_NEXT(bytes, i, length, c);
    if (c < 0) return false;
    out->push_back(static_cast<char32_t>(c));
  }
  return true;
}

bool IsShortCode(absl::string_view s) {
  if (s.size() < 3 || s.front() != ':' || s.back() != ':') return false;
  const absl::string_view name = s.substr(1, s.size() - 2);
  if (name.size() > kMaxEmojiShortCodeChars) return false;
  for (char c : name) {
    if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '_' &&
        c != '+' && c != '-') {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::Status ValidateStatusText(absl::string_view text,
                                absl::string_view field) {
  // At most 4 bytes a character: a longer text is too long, and need not
  // be decoded to know it.
  if (text.size() > 4 * kMaxStatusTextChars) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be at most ", kMaxStatusTextChars,
                     " characters, got ", text.size(), " bytes"));
  }
  std::u32string chars;
  if (!DecodeUtf8(text, &chars)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be UTF-8 text"));
  }
  if (chars.size() > kMaxStatusTextChars) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be at most ", kMaxStatusTextChars,
                     " characters, got ", chars.size()));
  }
  for (size_t i = 0; i < chars.size(); ++i) {
    // Not u_iscntrl(): it counts format characters too, and a ZWJ emoji
    // sequence or right-to-left text needs those (U+200D, U+200F).
    const int8_t type = u_charType(static_cast<UChar32>(chars[i]));
    if (type == U_CONTROL_CHAR || type == U_LINE_SEPARATOR ||
        type == U_PARAGRAPH_SEPARATOR) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, " must be one line of text; character ", i + 1,
          " is a control character (U+",
          absl::Hex(static_cast<uint32_t>(chars[i]), absl::kZeroPad4), ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateEmoji(absl::string_view emoji, absl::string_view field) {
  if (IsShortCode(emoji)) return absl::OkStatus();
  std::u32string chars;
  if (!DecodeUtf8(emoji, &chars)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be UTF-8 text"));
  }
  // The longest emoji sequences (ZWJ families with skin tones) are ~35
  // bytes; 64 leaves room and bounds the work.
  if (emoji.size() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat(field,
                     " must be a short code such as \":coffee:\" or one emoji "
                     "character, got ",
                     emoji.size(), " bytes"));
  }
  // Valid UTF-8 of at most 64 bytes: shown as it is, for a person to read.
  const auto refuse = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        field,
        " must be a short code such as \":coffee:\" (lower-case letters, "
        "digits, _ + -) or one emoji character, got \"",
        emoji, "\""));
  };
  if (emoji.empty()) return refuse();
  UErrorCode error = U_ZERO_ERROR;
  std::unique_ptr<icu::BreakIterator> graphemes(
      icu::BreakIterator::createCharacterInstance(icu::Locale::getRoot(),
                                                  error));
  if (U_FAILURE(error)) {
    return absl::InternalError(absl::StrCat(
        "ICU's grapheme segmentation is unavailable: ", u_errorName(error)));
  }
  const icu::UnicodeString text = icu::UnicodeString::fromUTF8(
      icu::StringPiece(emoji.data(), static_cast<int32_t>(emoji.size())));
  graphemes->setText(text);
  graphemes->first();
  if (graphemes->next() != text.length()) return refuse();  // not one
  for (char32_t c : chars) {
    const auto cp = static_cast<UChar32>(c);
    if (u_hasBinaryProperty(cp, UCHAR_EXTENDED_PICTOGRAPHIC) ||
        u_hasBinaryProperty(cp, UCHAR_REGIONAL_INDICATOR) ||
        cp == kCombiningKeycap) {
      return absl::OkStatus();
    }
  }
  return refuse();
}

}  // namespace presence
