#ifndef PRESENCE_SERVICE_STATUS_MACROS_H_
#define PRESENCE_SERVICE_STATUS_MACROS_H_

// Abseil 20220623 (Debian 12) ships Status and StatusOr but no status macros.

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define PRESENCE_STATUS_CONCAT_INNER_(a, b) a##b
#define PRESENCE_STATUS_CONCAT_(a, b) PRESENCE_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define PRESENCE_RETURN_IF_ERROR(expr)                                  \
  do {                                                                  \
    if (absl::Status presence_status_ = (expr); !presence_status_.ok()) \
      return presence_status_;                                          \
  } while (false)

// `lhs = value of rexpr` (an absl::StatusOr<T>), or returns its error.
#define PRESENCE_ASSIGN_OR_RETURN(lhs, rexpr) \
  PRESENCE_ASSIGN_OR_RETURN_IMPL_(            \
      PRESENCE_STATUS_CONCAT_(presence_statusor_, __LINE__), lhs, rexpr)

#define PRESENCE_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                    \
  if (!statusor.ok()) return std::move(statusor).status();    \
  lhs = *std::move(statusor)

#endif  // PRESENCE_SERVICE_STATUS_MACROS_H_
