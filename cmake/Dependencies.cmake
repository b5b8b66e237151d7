# LibTorch comes from the installed PyTorch wheel (CPU here, CUDA on the GPU machine).
if(NOT Torch_DIR)
  find_package(Python3 COMPONENTS Interpreter QUIET)
  if(Python3_Interpreter_FOUND)
    execute_process(
      COMMAND ${Python3_EXECUTABLE} -c "import torch; print(torch.utils.cmake_prefix_path)"
      OUTPUT_VARIABLE MICRODIT_TORCH_PREFIX OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(MICRODIT_TORCH_PREFIX)
      list(APPEND CMAKE_PREFIX_PATH "${MICRODIT_TORCH_PREFIX}")
    endif()
  endif()
endif()
find_package(Torch REQUIRED)

find_package(yaml-cpp REQUIRED)
# yaml-cpp 0.7 exports the target `yaml-cpp`, 0.8 exports `yaml-cpp::yaml-cpp`.
if(TARGET yaml-cpp::yaml-cpp)
  set(MICRODIT_YAML_TARGET yaml-cpp::yaml-cpp)
else()
  set(MICRODIT_YAML_TARGET yaml-cpp)
endif()

find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)

set(MICRODIT_HAVE_OPENCV OFF)
if(MICRODIT_WITH_OPENCV)
  find_package(OpenCV QUIET COMPONENTS core imgproc imgcodecs)
  if(OpenCV_FOUND)
    set(MICRODIT_HAVE_OPENCV ON)
  else()
    message(STATUS "OpenCV not found: images other than PNG cannot be decoded (microdit-prepare)")
  endif()
endif()

# The torch wheel ships headers of another fmt major version in its include directory, and its
# -isystem path comes before /usr/include, so <fmt/...> would not match the libfmt and libspdlog
# we link. A build-tree directory of symlinks to the system fmt and spdlog headers, added with
# -I (searched before -isystem), puts the right headers first.
set(MICRODIT_SYSTEM_HEADERS "${CMAKE_BINARY_DIR}/system-headers")
file(MAKE_DIRECTORY "${MICRODIT_SYSTEM_HEADERS}")
foreach(_lib fmt spdlog)
  get_target_property(_dirs ${_lib}::${_lib} INTERFACE_INCLUDE_DIRECTORIES)
  find_path(_header_dir NAMES ${_lib} PATHS ${_dirs} /usr/include /usr/local/include NO_DEFAULT_PATH)
  if(_header_dir AND NOT EXISTS "${MICRODIT_SYSTEM_HEADERS}/${_lib}")
    file(CREATE_LINK "${_header_dir}/${_lib}" "${MICRODIT_SYSTEM_HEADERS}/${_lib}" SYMBOLIC)
  endif()
  unset(_header_dir CACHE)
endforeach()

# Libraries for file formats, found through pkg-config. Every build needs nlohmann-json (JSON
# headers and metadata), libspng (PNG), libmd (SHA-1 and MD5) and xxHash (used header-only);
# the GPU machine lacks their -dev packages and gets them from .device/ (scripts/device/prepare.sh).
find_package(PkgConfig REQUIRED)
pkg_check_modules(MICRODIT_JSON REQUIRED IMPORTED_TARGET nlohmann_json)
pkg_check_modules(MICRODIT_SPNG REQUIRED IMPORTED_TARGET spng)
pkg_check_modules(MICRODIT_MD REQUIRED IMPORTED_TARGET libmd)
pkg_check_modules(MICRODIT_XXHASH REQUIRED IMPORTED_TARGET libxxhash)

# Optional libraries of the real-data path. Each missing one turns off one feature with a clear
# runtime error, so the trainer still builds on a bare GPU machine: PCRE2 (CLIP tokenizer's
# Unicode classes), zstd (compressed MDS shards), zlib (gzip vocabularies), libarchive (WebDataset
# tars and .npz statistics), libjpeg (JPEG images; libjpeg-turbo's libjpeg.pc). A library is used
# only when a program calling it also links: the static libarchive carried to the GPU machine
# needs shared libraries that machine may lack.
include(CheckCXXSourceCompiles)
foreach(_dep PCRE2:libpcre2-8:pcre2_compile_8 ZSTD:libzstd:ZSTD_versionNumber
             ZLIB:zlib:zlibVersion LIBARCHIVE:libarchive:archive_read_new
             LIBJPEG:libjpeg:jpeg_std_error)
  string(REPLACE ":" ";" _triple "${_dep}")
  list(GET _triple 0 _name)
  list(GET _triple 1 _module)
  list(GET _triple 2 _symbol)
  set(MICRODIT_HAVE_${_name} OFF)
  pkg_check_modules(MICRODIT_${_name} QUIET IMPORTED_TARGET ${_module})
  if(MICRODIT_${_name}_FOUND)
    set(CMAKE_REQUIRED_LIBRARIES PkgConfig::MICRODIT_${_name})
    check_cxx_source_compiles(
      "extern \"C\" char ${_symbol}(); int main() { return ${_symbol}() != 0; }"
      MICRODIT_${_name}_LINKS)
    unset(CMAKE_REQUIRED_LIBRARIES)
    if(MICRODIT_${_name}_LINKS)
      set(MICRODIT_HAVE_${_name} ON)
    endif()
  endif()
  message(STATUS "${_module}: ${MICRODIT_HAVE_${_name}}")
endforeach()

# Multi-process training (src/train/process_group.cpp). Gloo (CPU processes): the PyTorch wheels
# hold its code but not its headers; Debian's libgloo-dev provides them. NCCL (GPUs): the CUDA
# wheel's c10d was built with it; nccl.h comes with the wheel's nvidia-nccl package.
find_path(MICRODIT_GLOO_INCLUDE_DIR gloo/context.h)
if(MICRODIT_GLOO_INCLUDE_DIR)
  message(STATUS "Gloo headers: ${MICRODIT_GLOO_INCLUDE_DIR} (multi-process CPU training)")
else()
  message(STATUS "Gloo headers not found (apt install libgloo-dev): no multi-process CPU training")
endif()
option(MICRODIT_WITH_NCCL "Use NCCL for multi-GPU training when LibTorch has CUDA" ON)
if(MICRODIT_WITH_NCCL AND TARGET c10_cuda)
  # Every nccl.h under the Python `nvidia` packages (nvidia-nccl-cu13 puts it in
  # nvidia/nccl/include; other releases elsewhere), then the CUDA toolkit's and the system's.
  execute_process(
    COMMAND ${Python3_EXECUTABLE} -c
            "import glob, os, importlib.util as u; s = u.find_spec('nvidia'); roots = list(s.submodule_search_locations) if s else []; print('|'.join(sorted({os.path.dirname(h) for r in roots for h in glob.glob(os.path.join(r, '**', 'nccl.h'), recursive=True)})))"
    OUTPUT_VARIABLE _nccl_hints OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  string(REPLACE "|" ";" _nccl_hints "${_nccl_hints}")
  # A cache variable only (a normal variable of the same name would skip the search).
  find_path(MICRODIT_NCCL_INCLUDE_DIR nccl.h HINTS ${_nccl_hints} /usr/local/cuda/include)
  if(MICRODIT_NCCL_INCLUDE_DIR)
    message(STATUS "nccl.h: ${MICRODIT_NCCL_INCLUDE_DIR} (multi-GPU training)")
  else()
    message(STATUS "nccl.h not found (searched ${_nccl_hints} /usr/local/cuda/include and the "
                   "system): no multi-GPU training")
  endif()
endif()

# The optional libraries found above, linked to `target` with their MICRODIT_HAVE_* definitions
# (PUBLIC: the tools and tests reuse the library's precompiled header, which needs the same -D).
# libjpeg is called by src/image/decode.cpp alone: its definition goes on that file only (and on
# the tests of it, microdit_define_have_libjpeg), so that finding libjpeg or not leaves every
# other compile command, and the shared precompiled header, as they were.
get_filename_component(MICRODIT_IMAGE_DECODE_SOURCE
                       "${CMAKE_CURRENT_LIST_DIR}/../src/image/decode.cpp" ABSOLUTE)
function(microdit_link_optional_libraries target)
  foreach(_name PCRE2 ZSTD ZLIB LIBARCHIVE)
    if(MICRODIT_HAVE_${_name})
      target_compile_definitions(${target} PUBLIC MICRODIT_HAVE_${_name}=1)
      target_link_libraries(${target} PUBLIC PkgConfig::MICRODIT_${_name})
    endif()
  endforeach()
  if(MICRODIT_HAVE_LIBJPEG)
    target_link_libraries(${target} PUBLIC PkgConfig::MICRODIT_LIBJPEG)
    microdit_define_have_libjpeg(${target} "${MICRODIT_IMAGE_DECODE_SOURCE}")
  endif()
  if(MICRODIT_HAVE_OPENCV)
    target_compile_definitions(${target} PUBLIC MICRODIT_HAVE_OPENCV=1)
    target_link_libraries(${target} PUBLIC ${OpenCV_LIBS})
  endif()
endfunction()

# MICRODIT_HAVE_LIBJPEG=1 on the given sources of `target` where libjpeg was found.
function(microdit_define_have_libjpeg target)
  if(MICRODIT_HAVE_LIBJPEG)
    set_property(SOURCE ${ARGN} TARGET_DIRECTORY ${target}
                 APPEND PROPERTY COMPILE_DEFINITIONS MICRODIT_HAVE_LIBJPEG=1)
  endif()
endfunction()
