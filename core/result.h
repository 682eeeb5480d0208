#pragma once
// Result<T>: the value of an operation that can fail in an expected way. No exception crosses a
// library's public API; the error kind decides whether the caller retries.
#include <string>
#include <utility>
#include <variant>

#include "core/assert.h"

namespace triage::core {

enum class ErrorKind {
    InvalidInput,  // the input is wrong; retrying the same input fails again
    Transient,     // a resource is short (disk, lock, peer down); retry later
    Permanent,     // the operation can never succeed (rejected by a peer, unsupported)
    NotFound,      // the thing asked for does not exist
    Internal,      // a bug or an unexpected third-party failure
};

const char* to_string(ErrorKind kind);

struct Error {
    ErrorKind kind = ErrorKind::Internal;
    std::string message;
};

inline Error make_error(ErrorKind kind, std::string message) { return {kind, std::move(message)}; }

template <class T>
class [[nodiscard]] Result {
public:
    Result(T value) : m_v(std::move(value)) {}  // NOLINT(google-explicit-constructor)
    Result(Error error) : m_v(std::move(error)) {}  // NOLINT(google-explicit-constructor)

    bool ok() const { return m_v.index() == 0; }
    explicit operator bool() const { return ok(); }
    T& value() & { TRIAGE_ASSERT(ok()); return std::get<0>(m_v); }
    const T& value() const& { TRIAGE_ASSERT(ok()); return std::get<0>(m_v); }
    T&& value() && { TRIAGE_ASSERT(ok()); return std::get<0>(std::move(m_v)); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() { return value(); }
    const Error& error() const { TRIAGE_ASSERT(!ok()); return std::get<1>(m_v); }

private:
    std::variant<T, Error> m_v;
};

template <>
class [[nodiscard]] Result<void> {
public:
    Result() = default;
    Result(Error error) : m_error(std::move(error)), m_ok(false) {}  // NOLINT
    bool ok() const { return m_ok; }
    explicit operator bool() const { return m_ok; }
    const Error& error() const { TRIAGE_ASSERT(!m_ok); return m_error; }

private:
    Error m_error;
    bool m_ok = true;
};

using Status = Result<void>;

}  // namespace triage::core
