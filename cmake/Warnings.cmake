# Warnings for the project's own targets (third-party headers are included as SYSTEM).
add_library(triage_warnings INTERFACE)
target_compile_options(triage_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor $<$<BOOL:${TRIAGE_WERROR}>:-Werror>)
if(TRIAGE_ASAN)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
if(TRIAGE_TSAN)
  add_compile_options(-fsanitize=thread)
  add_link_options(-fsanitize=thread)
endif()

# triage_library(name SOURCES ...): one static library per layer folder, rooted at the repo root.
function(triage_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PRIVATE triage_warnings)
endfunction()
