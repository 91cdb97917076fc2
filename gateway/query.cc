#include "gateway/query.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace presence::rest {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// `+` and `%XX` decoded (WHATWG URL standard, application/x-www-form-
// urlencoded parsing), except that an invalid escape is an error rather
// than kept as is: a client that sends one has a bug worth hearing about.
absl::StatusOr<std::string> Decode(absl::string_view text,
                                   absl::string_view item) {
  std::string decoded;
  decoded.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      decoded += ' ';
    } else if (text[i] != '%') {
      decoded += text[i];
    } else {
      const int high = i + 1 < text.size() ? HexValue(text[i + 1]) : -1;
      const int low = i + 2 < text.size() ? HexValue(text[i + 2]) : -1;
      if (high < 0 || low < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "query: '", item, "' has an invalid percent-escape '",
            text.substr(i, 3), "' (expected % and two hex digits)"));
      }
      decoded += static_cast<char>(high * 16 + low);
      i += 2;
    }
  }
  return decoded;
}

}  // namespace

absl::string_view PathOf(absl::string_view target) {
  return target.substr(0, target.find('?'));
}

absl::StatusOr<Query> Query::Parse(absl::string_view target) {
  Query query;
  const size_t question = target.find('?');
  if (question == absl::string_view::npos) return query;
  for (absl::string_view item :
       absl::StrSplit(target.substr(question + 1), '&', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> raw =
        absl::StrSplit(item, absl::MaxSplits('=', 1));
    absl::StatusOr<std::string> name = Decode(raw.first, item);
    if (!name.ok()) return name.status();
    absl::StatusOr<std::string> value = Decode(raw.second, item);
    if (!value.ok()) return value.status();
    if (!query.values_.emplace(*std::move(name), *std::move(value)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("query: '", raw.first, "' is given more than once"));
    }
  }
  return query;
}

std::optional<absl::string_view> Query::Get(absl::string_view name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<std::vector<int64_t>> ParseUserIds(absl::string_view list) {
  std::vector<int64_t> ids;
  if (list.empty()) return ids;
  for (absl::string_view item : absl::StrSplit(list, ',')) {
    int64_t id = 0;
    // Digits only: SimpleAtoi alone would take "+5", " 5" and "0x5".
    const bool digits =
        !item.empty() && std::all_of(item.begin(), item.end(), [](char c) {
          return absl::ascii_isdigit(static_cast<unsigned char>(c));
        });
    if (!digits || !absl::SimpleAtoi(item, &id) || id <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "user_ids: '", absl::CHexEscape(item),
          "' is not a user id (an integer from 1 to 9223372036854775807); "
          "send user_ids=1,5,12"));
    }
    ids.push_back(id);
  }
  return ids;
}

}  // namespace presence::rest
