/**
 * The protocol-neutral form of a chat request and of its streamed answer. Both wire protocols
 * (OpenAI Chat Completions, Anthropic Messages) are read into `ChatRequest` at the gateway, any
 * provider is called from it on the ai worker, and the answer travels back as `ChatEvent`s that the
 * gateway writes in the client's protocol. Keeping one middle form makes every translation a pair
 * of tables (protocol ⇄ neutral) instead of one per protocol pair.
 */

export type Protocol = "openai" | "anthropic";

/** Anthropic's prompt-cache marker, carried through unchanged to Anthropic upstreams. */
export interface CacheControl {
	type: "ephemeral";
	ttl?: "5m" | "1h";
}

export type ChatPart =
	| { type: "text"; text: string; cacheControl?: CacheControl }
	/** `url` is an http(s) URL or a `data:<mediaType>;base64,…` URL. */
	| { type: "image"; url: string; detail?: "auto" | "low" | "high"; cacheControl?: CacheControl };

export interface ToolCall {
	id: string;
	name: string;
	/** JSON text of the arguments, as the model wrote it. */
	arguments: string;
}

export interface ChatMessage {
	role: "system" | "user" | "assistant" | "tool";
	content: ChatPart[];
	/** assistant: the tool calls it made. */
	toolCalls?: ToolCall[];
	/** tool: which call this is the result of. */
	toolCallId?: string;
	/** tool: the result is an error (Anthropic's `is_error`). */
	isError?: boolean;
}

export interface ToolDef {
	name: string;
	description?: string;
	/** JSON Schema of the arguments (checked to compile at the gateway). */
	parameters: Record<string, unknown>;
	strict?: boolean;
	cacheControl?: CacheControl;
}

export type ToolChoice = "auto" | "none" | "required" | { name: string };

export type ResponseFormat =
	| { type: "text" }
	| { type: "json_object" }
	| { type: "json_schema"; name: string; schema: Record<string, unknown>; strict: boolean; description?: string };

export interface ChatRequest {
	model: string;
	messages: ChatMessage[];
	tools?: ToolDef[];
	toolChoice?: ToolChoice;
	parallelToolCalls?: boolean;
	responseFormat?: ResponseFormat;
	temperature?: number;
	topP?: number;
	stop?: string[];
	/** Best effort: OpenAI-protocol upstreams get it; Anthropic has no seed (documented). */
	seed?: number;
	/** The client's cap on output tokens (max_tokens / max_completion_tokens). */
	maxTokens?: number;
	reasoningEffort?: "minimal" | "low" | "medium" | "high";
	stream: boolean;
	/** OpenAI `stream_options.include_usage`: a final usage chunk. */
	includeUsage: boolean;
	/** Opaque end-user id (OpenAI `user`, Anthropic `metadata.user_id`), passed upstream. */
	endUser?: string;
}

export type FinishReason = "stop" | "length" | "tool_calls" | "content_filter";

export interface ChatUsage {
	/** Every input token, cached ones included. */
	promptTokens: number;
	/** Every output token, reasoning ones included. */
	completionTokens: number;
	/** Input tokens read from the provider's prompt cache. */
	cachedTokens: number;
	/** Input tokens written to the prompt cache (Anthropic). */
	cacheWriteTokens: number;
	reasoningTokens: number;
}

export const ZERO_USAGE: ChatUsage = Object.freeze({
	promptTokens: 0,
	completionTokens: 0,
	cachedTokens: 0,
	cacheWriteTokens: 0,
	reasoningTokens: 0
});

/** What an upstream adapter yields for one attempt. */
export type UpstreamEvent =
	| { type: "text"; text: string }
	/** A tool call's delta: `id` and `name` come with its first delta. */
	| { type: "tool"; index: number; id?: string; name?: string; args: string }
	| { type: "done"; finish: FinishReason; stopSequence: string | null; usage: ChatUsage | null };

/** What the ai worker streams to the gateway for one request. */
export type ChatEvent =
	| { t: "start"; id: string; model: string; created: number; promptTokens: number }
	| { t: "text"; text: string }
	| { t: "tool"; index: number; id?: string; name?: string; args: string }
	| {
			t: "done";
			finish: FinishReason;
			stopSequence: string | null;
			usage: ChatUsage;
			costCredits: number;
	  }
	/** After the first byte nothing can change the status: the stream ends with this. */
	| {
			t: "error";
			status: number;
			/** The neutral kind (src/compat/errors.ts). */
			code: string;
			message: string;
			/** A refusal sent as an event (a speculated request's hold): the rest of its CompatError. */
			param?: string | null;
			errorCode?: string | null;
			retryAfterS?: number | null;
	  };
