"""Meeting LangChain and LangGraph where they are: a chat model that scales
(:class:`~tts_graph.integrations.chat_model.TTSChatModel`) and a graph as a tool an agent calls
when it decides to think harder (:func:`~tts_graph.integrations.tool.graph_as_tool`)."""
