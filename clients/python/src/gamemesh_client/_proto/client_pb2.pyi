from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KickReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KICK_REASON_UNSPECIFIED: _ClassVar[KickReason]
    KICK_REASON_DUPLICATE_LOGIN: _ClassVar[KickReason]
    KICK_REASON_SERVER_SHUTDOWN: _ClassVar[KickReason]
    KICK_REASON_IDLE_TIMEOUT: _ClassVar[KickReason]
    KICK_REASON_PROTOCOL_ERROR: _ClassVar[KickReason]
    KICK_REASON_SLOW_CONSUMER: _ClassVar[KickReason]
    KICK_REASON_SESSION_EXPIRED: _ClassVar[KickReason]
    KICK_REASON_SERVER_UNAVAILABLE: _ClassVar[KickReason]
    KICK_REASON_RATE_LIMITED: _ClassVar[KickReason]

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CODE_UNSPECIFIED: _ClassVar[ErrorCode]
    ERROR_CODE_NOT_AUTHENTICATED: _ClassVar[ErrorCode]
    ERROR_CODE_INVALID_TOKEN: _ClassVar[ErrorCode]
    ERROR_CODE_DUPLICATE_SEQUENCE: _ClassVar[ErrorCode]
    ERROR_CODE_MALFORMED_PACKET: _ClassVar[ErrorCode]
    ERROR_CODE_UNKNOWN_MESSAGE: _ClassVar[ErrorCode]
    ERROR_CODE_SESSION_NOT_FOUND: _ClassVar[ErrorCode]
    ERROR_CODE_INTERNAL: _ClassVar[ErrorCode]
    ERROR_CODE_UNAVAILABLE: _ClassVar[ErrorCode]
    ERROR_CODE_RATE_LIMITED: _ClassVar[ErrorCode]
    ERROR_CODE_USER_OFFLINE: _ClassVar[ErrorCode]
    ERROR_CODE_NOT_IN_ROOM: _ClassVar[ErrorCode]
    ERROR_CODE_INVALID_ROOM_NAME: _ClassVar[ErrorCode]
    ERROR_CODE_INVALID_TEXT: _ClassVar[ErrorCode]
    ERROR_CODE_UNKNOWN_ROUTE: _ClassVar[ErrorCode]
    ERROR_CODE_BAD_PAYLOAD: _ClassVar[ErrorCode]
    ERROR_CODE_REFUSED: _ClassVar[ErrorCode]

class ChatNoticeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHAT_NOTICE_KIND_UNSPECIFIED: _ClassVar[ChatNoticeKind]
    CHAT_NOTICE_KIND_JOINED: _ClassVar[ChatNoticeKind]
    CHAT_NOTICE_KIND_LEFT: _ClassVar[ChatNoticeKind]
KICK_REASON_UNSPECIFIED: KickReason
KICK_REASON_DUPLICATE_LOGIN: KickReason
KICK_REASON_SERVER_SHUTDOWN: KickReason
KICK_REASON_IDLE_TIMEOUT: KickReason
KICK_REASON_PROTOCOL_ERROR: KickReason
KICK_REASON_SLOW_CONSUMER: KickReason
KICK_REASON_SESSION_EXPIRED: KickReason
KICK_REASON_SERVER_UNAVAILABLE: KickReason
KICK_REASON_RATE_LIMITED: KickReason
ERROR_CODE_UNSPECIFIED: ErrorCode
ERROR_CODE_NOT_AUTHENTICATED: ErrorCode
ERROR_CODE_INVALID_TOKEN: ErrorCode
ERROR_CODE_DUPLICATE_SEQUENCE: ErrorCode
ERROR_CODE_MALFORMED_PACKET: ErrorCode
ERROR_CODE_UNKNOWN_MESSAGE: ErrorCode
ERROR_CODE_SESSION_NOT_FOUND: ErrorCode
ERROR_CODE_INTERNAL: ErrorCode
ERROR_CODE_UNAVAILABLE: ErrorCode
ERROR_CODE_RATE_LIMITED: ErrorCode
ERROR_CODE_USER_OFFLINE: ErrorCode
ERROR_CODE_NOT_IN_ROOM: ErrorCode
ERROR_CODE_INVALID_ROOM_NAME: ErrorCode
ERROR_CODE_INVALID_TEXT: ErrorCode
ERROR_CODE_UNKNOWN_ROUTE: ErrorCode
ERROR_CODE_BAD_PAYLOAD: ErrorCode
ERROR_CODE_REFUSED: ErrorCode
CHAT_NOTICE_KIND_UNSPECIFIED: ChatNoticeKind
CHAT_NOTICE_KIND_JOINED: ChatNoticeKind
CHAT_NOTICE_KIND_LEFT: ChatNoticeKind

class ClientPacket(_message.Message):
    __slots__ = ("sequence_id", "login", "resume", "echo", "heartbeat", "logout", "chat_list_rooms", "chat_join", "chat_leave", "chat_say", "chat_whisper", "increment", "game")
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    LOGIN_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    ECHO_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    LOGOUT_FIELD_NUMBER: _ClassVar[int]
    CHAT_LIST_ROOMS_FIELD_NUMBER: _ClassVar[int]
    CHAT_JOIN_FIELD_NUMBER: _ClassVar[int]
    CHAT_LEAVE_FIELD_NUMBER: _ClassVar[int]
    CHAT_SAY_FIELD_NUMBER: _ClassVar[int]
    CHAT_WHISPER_FIELD_NUMBER: _ClassVar[int]
    INCREMENT_FIELD_NUMBER: _ClassVar[int]
    GAME_FIELD_NUMBER: _ClassVar[int]
    sequence_id: int
    login: LoginRequest
    resume: ResumeRequest
    echo: EchoRequest
    heartbeat: HeartbeatRequest
    logout: LogoutRequest
    chat_list_rooms: ChatListRoomsRequest
    chat_join: ChatJoinRequest
    chat_leave: ChatLeaveRequest
    chat_say: ChatSayRequest
    chat_whisper: ChatWhisperRequest
    increment: IncrementRequest
    game: GameRequest
    def __init__(self, sequence_id: _Optional[int] = ..., login: _Optional[_Union[LoginRequest, _Mapping]] = ..., resume: _Optional[_Union[ResumeRequest, _Mapping]] = ..., echo: _Optional[_Union[EchoRequest, _Mapping]] = ..., heartbeat: _Optional[_Union[HeartbeatRequest, _Mapping]] = ..., logout: _Optional[_Union[LogoutRequest, _Mapping]] = ..., chat_list_rooms: _Optional[_Union[ChatListRoomsRequest, _Mapping]] = ..., chat_join: _Optional[_Union[ChatJoinRequest, _Mapping]] = ..., chat_leave: _Optional[_Union[ChatLeaveRequest, _Mapping]] = ..., chat_say: _Optional[_Union[ChatSayRequest, _Mapping]] = ..., chat_whisper: _Optional[_Union[ChatWhisperRequest, _Mapping]] = ..., increment: _Optional[_Union[IncrementRequest, _Mapping]] = ..., game: _Optional[_Union[GameRequest, _Mapping]] = ...) -> None: ...

class ServerPacket(_message.Message):
    __slots__ = ("sequence_id", "login", "resume", "echo", "heartbeat", "logout", "kicked", "error", "chat_list_rooms", "chat_join", "chat_leave", "chat_say", "chat_whisper", "chat_message", "chat_notice", "chat_whispered", "notice", "increment", "game", "game_push")
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    LOGIN_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    ECHO_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    LOGOUT_FIELD_NUMBER: _ClassVar[int]
    KICKED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CHAT_LIST_ROOMS_FIELD_NUMBER: _ClassVar[int]
    CHAT_JOIN_FIELD_NUMBER: _ClassVar[int]
    CHAT_LEAVE_FIELD_NUMBER: _ClassVar[int]
    CHAT_SAY_FIELD_NUMBER: _ClassVar[int]
    CHAT_WHISPER_FIELD_NUMBER: _ClassVar[int]
    CHAT_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CHAT_NOTICE_FIELD_NUMBER: _ClassVar[int]
    CHAT_WHISPERED_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    INCREMENT_FIELD_NUMBER: _ClassVar[int]
    GAME_FIELD_NUMBER: _ClassVar[int]
    GAME_PUSH_FIELD_NUMBER: _ClassVar[int]
    sequence_id: int
    login: LoginResponse
    resume: ResumeResponse
    echo: EchoResponse
    heartbeat: HeartbeatResponse
    logout: LogoutResponse
    kicked: Kicked
    error: ErrorResponse
    chat_list_rooms: ChatListRoomsResponse
    chat_join: ChatJoinResponse
    chat_leave: ChatLeaveResponse
    chat_say: ChatSayResponse
    chat_whisper: ChatWhisperResponse
    chat_message: ChatMessage
    chat_notice: ChatNotice
    chat_whispered: ChatWhisper
    notice: ServerNotice
    increment: IncrementResponse
    game: GameResponse
    game_push: GamePush
    def __init__(self, sequence_id: _Optional[int] = ..., login: _Optional[_Union[LoginResponse, _Mapping]] = ..., resume: _Optional[_Union[ResumeResponse, _Mapping]] = ..., echo: _Optional[_Union[EchoResponse, _Mapping]] = ..., heartbeat: _Optional[_Union[HeartbeatResponse, _Mapping]] = ..., logout: _Optional[_Union[LogoutResponse, _Mapping]] = ..., kicked: _Optional[_Union[Kicked, _Mapping]] = ..., error: _Optional[_Union[ErrorResponse, _Mapping]] = ..., chat_list_rooms: _Optional[_Union[ChatListRoomsResponse, _Mapping]] = ..., chat_join: _Optional[_Union[ChatJoinResponse, _Mapping]] = ..., chat_leave: _Optional[_Union[ChatLeaveResponse, _Mapping]] = ..., chat_say: _Optional[_Union[ChatSayResponse, _Mapping]] = ..., chat_whisper: _Optional[_Union[ChatWhisperResponse, _Mapping]] = ..., chat_message: _Optional[_Union[ChatMessage, _Mapping]] = ..., chat_notice: _Optional[_Union[ChatNotice, _Mapping]] = ..., chat_whispered: _Optional[_Union[ChatWhisper, _Mapping]] = ..., notice: _Optional[_Union[ServerNotice, _Mapping]] = ..., increment: _Optional[_Union[IncrementResponse, _Mapping]] = ..., game: _Optional[_Union[GameResponse, _Mapping]] = ..., game_push: _Optional[_Union[GamePush, _Mapping]] = ...) -> None: ...

class LoginRequest(_message.Message):
    __slots__ = ("user_id", "token")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    token: str
    def __init__(self, user_id: _Optional[int] = ..., token: _Optional[str] = ...) -> None: ...

class LoginResponse(_message.Message):
    __slots__ = ("session_id", "resume_token", "game_server_node_id", "replaced_existing_session")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    GAME_SERVER_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    REPLACED_EXISTING_SESSION_FIELD_NUMBER: _ClassVar[int]
    session_id: int
    resume_token: str
    game_server_node_id: int
    replaced_existing_session: bool
    def __init__(self, session_id: _Optional[int] = ..., resume_token: _Optional[str] = ..., game_server_node_id: _Optional[int] = ..., replaced_existing_session: _Optional[bool] = ...) -> None: ...

class ResumeRequest(_message.Message):
    __slots__ = ("session_id", "resume_token")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_id: int
    resume_token: str
    def __init__(self, session_id: _Optional[int] = ..., resume_token: _Optional[str] = ...) -> None: ...

class ResumeResponse(_message.Message):
    __slots__ = ("snapshot",)
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    snapshot: SessionSnapshot
    def __init__(self, snapshot: _Optional[_Union[SessionSnapshot, _Mapping]] = ...) -> None: ...

class SessionSnapshot(_message.Message):
    __slots__ = ("session_id", "user_id", "last_sequence_id", "game_server_node_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    GAME_SERVER_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: int
    user_id: int
    last_sequence_id: int
    game_server_node_id: int
    def __init__(self, session_id: _Optional[int] = ..., user_id: _Optional[int] = ..., last_sequence_id: _Optional[int] = ..., game_server_node_id: _Optional[int] = ...) -> None: ...

class EchoRequest(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class EchoResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("client_time_ms",)
    CLIENT_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    client_time_ms: int
    def __init__(self, client_time_ms: _Optional[int] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("client_time_ms", "server_time_ms")
    CLIENT_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    client_time_ms: int
    server_time_ms: int
    def __init__(self, client_time_ms: _Optional[int] = ..., server_time_ms: _Optional[int] = ...) -> None: ...

class LogoutRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LogoutResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IncrementRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IncrementResponse(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: int
    def __init__(self, value: _Optional[int] = ...) -> None: ...

class Kicked(_message.Message):
    __slots__ = ("reason", "detail")
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    reason: KickReason
    detail: str
    def __init__(self, reason: _Optional[_Union[KickReason, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class ErrorResponse(_message.Message):
    __slots__ = ("code", "detail", "outcome_unknown")
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    code: ErrorCode
    detail: str
    outcome_unknown: bool
    def __init__(self, code: _Optional[_Union[ErrorCode, str]] = ..., detail: _Optional[str] = ..., outcome_unknown: _Optional[bool] = ...) -> None: ...

class ChatListRoomsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ChatListRoomsResponse(_message.Message):
    __slots__ = ("rooms",)
    ROOMS_FIELD_NUMBER: _ClassVar[int]
    rooms: _containers.RepeatedCompositeFieldContainer[ChatRoomInfo]
    def __init__(self, rooms: _Optional[_Iterable[_Union[ChatRoomInfo, _Mapping]]] = ...) -> None: ...

class ChatRoomInfo(_message.Message):
    __slots__ = ("name", "member_count")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMBER_COUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    member_count: int
    def __init__(self, name: _Optional[str] = ..., member_count: _Optional[int] = ...) -> None: ...

class ChatJoinRequest(_message.Message):
    __slots__ = ("room",)
    ROOM_FIELD_NUMBER: _ClassVar[int]
    room: str
    def __init__(self, room: _Optional[str] = ...) -> None: ...

class ChatJoinResponse(_message.Message):
    __slots__ = ("room", "member_user_ids", "room_seq")
    ROOM_FIELD_NUMBER: _ClassVar[int]
    MEMBER_USER_IDS_FIELD_NUMBER: _ClassVar[int]
    ROOM_SEQ_FIELD_NUMBER: _ClassVar[int]
    room: str
    member_user_ids: _containers.RepeatedScalarFieldContainer[int]
    room_seq: int
    def __init__(self, room: _Optional[str] = ..., member_user_ids: _Optional[_Iterable[int]] = ..., room_seq: _Optional[int] = ...) -> None: ...

class ChatLeaveRequest(_message.Message):
    __slots__ = ("room",)
    ROOM_FIELD_NUMBER: _ClassVar[int]
    room: str
    def __init__(self, room: _Optional[str] = ...) -> None: ...

class ChatLeaveResponse(_message.Message):
    __slots__ = ("room", "room_seq")
    ROOM_FIELD_NUMBER: _ClassVar[int]
    ROOM_SEQ_FIELD_NUMBER: _ClassVar[int]
    room: str
    room_seq: int
    def __init__(self, room: _Optional[str] = ..., room_seq: _Optional[int] = ...) -> None: ...

class ChatSayRequest(_message.Message):
    __slots__ = ("room", "text")
    ROOM_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    room: str
    text: str
    def __init__(self, room: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class ChatSayResponse(_message.Message):
    __slots__ = ("room", "room_seq")
    ROOM_FIELD_NUMBER: _ClassVar[int]
    ROOM_SEQ_FIELD_NUMBER: _ClassVar[int]
    room: str
    room_seq: int
    def __init__(self, room: _Optional[str] = ..., room_seq: _Optional[int] = ...) -> None: ...

class ChatWhisperRequest(_message.Message):
    __slots__ = ("to_user_id", "text")
    TO_USER_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    to_user_id: int
    text: str
    def __init__(self, to_user_id: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class ChatWhisperResponse(_message.Message):
    __slots__ = ("to_user_id",)
    TO_USER_ID_FIELD_NUMBER: _ClassVar[int]
    to_user_id: int
    def __init__(self, to_user_id: _Optional[int] = ...) -> None: ...

class ChatMessage(_message.Message):
    __slots__ = ("room", "room_seq", "from_user_id", "from_name", "text", "sent_at_ms")
    ROOM_FIELD_NUMBER: _ClassVar[int]
    ROOM_SEQ_FIELD_NUMBER: _ClassVar[int]
    FROM_USER_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_NAME_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_MS_FIELD_NUMBER: _ClassVar[int]
    room: str
    room_seq: int
    from_user_id: int
    from_name: str
    text: str
    sent_at_ms: int
    def __init__(self, room: _Optional[str] = ..., room_seq: _Optional[int] = ..., from_user_id: _Optional[int] = ..., from_name: _Optional[str] = ..., text: _Optional[str] = ..., sent_at_ms: _Optional[int] = ...) -> None: ...

class ChatNotice(_message.Message):
    __slots__ = ("room", "room_seq", "kind", "user_id", "name", "text", "sent_at_ms")
    ROOM_FIELD_NUMBER: _ClassVar[int]
    ROOM_SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_MS_FIELD_NUMBER: _ClassVar[int]
    room: str
    room_seq: int
    kind: ChatNoticeKind
    user_id: int
    name: str
    text: str
    sent_at_ms: int
    def __init__(self, room: _Optional[str] = ..., room_seq: _Optional[int] = ..., kind: _Optional[_Union[ChatNoticeKind, str]] = ..., user_id: _Optional[int] = ..., name: _Optional[str] = ..., text: _Optional[str] = ..., sent_at_ms: _Optional[int] = ...) -> None: ...

class ChatWhisper(_message.Message):
    __slots__ = ("from_user_id", "from_name", "text", "sent_at_ms")
    FROM_USER_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_NAME_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_MS_FIELD_NUMBER: _ClassVar[int]
    from_user_id: int
    from_name: str
    text: str
    sent_at_ms: int
    def __init__(self, from_user_id: _Optional[int] = ..., from_name: _Optional[str] = ..., text: _Optional[str] = ..., sent_at_ms: _Optional[int] = ...) -> None: ...

class ServerNotice(_message.Message):
    __slots__ = ("kind", "text", "sent_at_ms")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_MS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    text: str
    sent_at_ms: int
    def __init__(self, kind: _Optional[str] = ..., text: _Optional[str] = ..., sent_at_ms: _Optional[int] = ...) -> None: ...

class GameRequest(_message.Message):
    __slots__ = ("route", "payload")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    route: str
    payload: bytes
    def __init__(self, route: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class GameResponse(_message.Message):
    __slots__ = ("payload",)
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    def __init__(self, payload: _Optional[bytes] = ...) -> None: ...

class GamePush(_message.Message):
    __slots__ = ("route", "payload")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    route: str
    payload: bytes
    def __init__(self, route: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...
