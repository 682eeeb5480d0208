#pragma once
// ASCII case mapping for header values and model vocabulary (DICOM code strings are ASCII).
#include <string>

namespace triage::core {

inline std::string ascii_upper(std::string s) {
    for (auto& c : s)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    return s;
}

inline std::string ascii_lower(std::string s) {
    for (auto& c : s)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return s;
}

}  // namespace triage::core
