#include "gateway/json.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/json_util.h"

namespace presence::rest {

std::string JsonIdList(absl::Span<const int64_t> ids) {
  return absl::StrCat("[", absl::StrJoin(ids, ","), "]");
}

std::string JsonObject(
    const google::protobuf::Struct& object,
    std::initializer_list<std::pair<absl::string_view, absl::string_view>>
        raw) {
  std::string rest;
  // A Struct always serialises.
  (void)google::protobuf::util::MessageToJsonString(object, &rest);
  std::string json = "{";
  for (const auto& [key, value] : raw) {
    if (json.size() > 1) json += ",";
    absl::StrAppend(&json, "\"", key, "\":", value);
  }
  absl::string_view members = absl::string_view(rest).substr(1);  // past '{'
  if (members != "}" && json.size() > 1) json += ",";
  json.append(members.data(), members.size());
  return json;
}

}  // namespace presence::rest
