#pragma once
// TRIAGE_ASSERT: for programming errors only, never for input. Logs and aborts.
namespace triage::core {
[[noreturn]] void assert_failed(const char* expr, const char* file, int line);
}
#define TRIAGE_ASSERT(expr) \
    ((expr) ? static_cast<void>(0) : ::triage::core::assert_failed(#expr, __FILE__, __LINE__))
