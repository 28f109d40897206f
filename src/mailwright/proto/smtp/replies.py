"""Named SMTP replies (RFC 5321 §4.2, enhanced codes from RFC 3463)."""

from mailwright.core.reply import Reply

OK = Reply(250, "2.0.0", "Ok")
SENDER_OK = Reply(250, "2.1.0", "Sender ok")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient ok")
RESET_OK = Reply(250, "2.0.0", "Reset ok")
START_DATA = Reply(354, None, "End data with <CR><LF>.<CR><LF>")
BYE = Reply(221, "2.0.0", "Bye")
READY_TLS = Reply(220, "2.0.0", "Ready to start TLS")
CANNOT_VRFY = Reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")

SERVICE_UNAVAILABLE = Reply(421, "4.3.2", "Service not available, closing channel")
TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections, try again later")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors, closing connection")
TIMEOUT = Reply(421, "4.4.2", "Timeout exceeded, closing connection")
SHUTTING_DOWN = Reply(421, "4.3.2", "Server shutting down, try again later")
TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
STORAGE_TRANSIENT = Reply(451, "4.3.0", "Temporary local problem, try again later")
MAILBOX_FULL_TEMP = Reply(452, "4.2.2", "Mailbox full, try again later")

SYNTAX_ERROR = Reply(500, "5.5.2", "Syntax error, command unrecognized")
LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long")
BARE_NEWLINE_COMMAND = Reply(500, "5.5.2", "Bad line ending: commands must end with <CR><LF>")
NUL_IN_COMMAND = Reply(500, "5.5.2", "NUL character in command")
EIGHT_BIT_COMMAND = Reply(500, "5.5.2", "Non-ASCII characters in command")
BAD_ARGUMENTS = Reply(501, "5.5.4", "Syntax error in parameters or arguments")
NOT_IMPLEMENTED = Reply(502, "5.5.1", "Command not implemented")
BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands")
BAD_PARAMETER = Reply(555, "5.5.4", "Unsupported parameter")
SIZE_EXCEEDED = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
NO_VALID_RECIPIENTS = Reply(554, "5.5.1", "No valid recipients")
BAD_CONTENT = Reply(554, "5.6.0", "Message content rejected")
BARE_NEWLINE_DATA = Reply(
    554, "5.6.0", "Message refused: bare <CR> or <LF>; lines must end with <CR><LF>"
)
NUL_IN_DATA = Reply(554, "5.6.0", "Message refused: NUL character in message")
DATA_LINE_TOO_LONG = Reply(554, "5.6.0", "Message refused: line too long")
RELAY_DENIED = Reply(550, "5.7.1", "Relay access denied")
UNKNOWN_USER = Reply(550, "5.1.1", "Recipient address rejected: user unknown")
MAILBOX_FULL = Reply(552, "5.2.2", "Mailbox full")
TLS_REQUIRED = Reply(530, "5.7.0", "Must issue a STARTTLS command first")

# AUTH (RFC 4954 §4 and §6); the 5.5.2 ones are the machine's own, for a response line it
# cannot pass on (§4: a response that cannot be decoded gets 501 5.5.2).
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
AUTH_SYNTAX = Reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
AUTH_CANCELLED = Reply(501, "5.0.0", "Authentication cancelled")
AUTH_UNDECODABLE = Reply(501, "5.5.2", "Cannot decode authentication response")
AUTH_LINE_TOO_LONG = Reply(500, "5.5.6", "Authentication exchange line too long")
AUTH_BARE_NEWLINE = Reply(
    501, "5.5.2", "Bad line ending: authentication responses must end with <CR><LF>"
)
AUTH_NUL = Reply(501, "5.5.2", "NUL character in authentication response")
AUTH_EIGHT_BIT = Reply(501, "5.5.2", "Non-ASCII characters in authentication response")
AUTH_MECHANISM_UNKNOWN = Reply(504, "5.5.4", "Unrecognized authentication type")
AUTH_INVALID = Reply(535, "5.7.8", "Authentication credentials invalid")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
AUTH_ENCRYPTION_REQUIRED = Reply(
    538, "5.7.11", "Encryption required for requested authentication mechanism"
)
AUTH_TEMPORARY = Reply(454, "4.7.0", "Temporary authentication failure")

# ESMTP parameter values the machine checks (RFC 4954 §5, RFC 3461 §4).
BAD_AUTH_PARAM = Reply(501, "5.5.4", "Bad AUTH parameter: <> or xtext expected")
BAD_RET_PARAM = Reply(501, "5.5.4", "Bad RET parameter: FULL or HDRS expected")
BAD_ENVID_PARAM = Reply(
    501, "5.5.4", "Bad ENVID parameter: printable xtext of at most 100 characters expected"
)
BAD_NOTIFY_PARAM = Reply(
    501, "5.5.4", "Bad NOTIFY parameter: NEVER, or one or more of SUCCESS,FAILURE,DELAY"
)
BAD_ORCPT_PARAM = Reply(501, "5.5.4", "Bad ORCPT parameter: addr-type;xtext expected")
